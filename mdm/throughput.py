"""Peak FLOP/s per device kind, for MFU = achieved model FLOP/s / peak FLOP/s.

Accelerators use published dense bf16 peaks per chip. On a CPU there is no meaningful published
peak, so the peak is *measured* once at start: the best of a few jitted 1024^3 matmuls in the
compute dtype (float32 accumulation) over the whole host (all fake CPU devices share the same cores, so the host figure
is the total, not a per-device one), and recorded in config.json.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

# Dense bf16 peak FLOP/s per device (one chip / GPU), from vendor specifications.
PEAK_FLOPS: dict[str, float] = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12, "TPU7x": 2307e12,
    "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12,
    "NVIDIA B200": 2250e12, "NVIDIA GH200": 989e12,
}


@functools.lru_cache(maxsize=None)
def measured_matmul_flops(dtype: str = "float32", n: int = 1024, reps: int = 5) -> float:
    """Best-of-`reps` FLOP/s of a jitted n x n x n matmul on the default device."""
    dt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(dtype, jnp.float32)
    a = jnp.ones((n, n), dt)
    # float32 accumulation, as the model's products (mdm.matmul): a bf16-result dot runs on
    # XLA:CPU's float32 path and would understate the machine's bf16 rate about 5x
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def peak_flops_total(devices: list, dtype: str = "float32") -> tuple[float, str]:
    """(peak FLOP/s summed over `devices`, how it was obtained)."""
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        return measured_matmul_flops(dtype), f"measured {dtype} matmul on the host CPU"
    for name, peak in PEAK_FLOPS.items():
        if kind.lower().startswith(name.lower()):
            return peak * len(devices), f"table: {name}"
    return float("nan"), f"unknown device kind {kind!r} (add it to mdm.throughput.PEAK_FLOPS)"
