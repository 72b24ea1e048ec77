"""Peak FLOP/s per device kind, for MFU = achieved model FLOP/s / peak FLOP/s.

Accelerators use published dense bf16 peaks per chip (the table in mdm.hardware). On a CPU there
is no meaningful published peak, so the peak is *measured* once at start: the best of a few
jitted 1024^3 matmuls in the compute dtype (float32 accumulation) over the whole host (all fake
CPU devices share the same cores, so the host figure is the total, not a per-device one), and
recorded in config.json.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from mdm.hardware import CHIPS, chip_for_device_kind

# Dense bf16 peak FLOP/s per device (one chip / GPU) by device-kind prefix: mdm.hardware.CHIPS,
# the one table of vendor figures.
PEAK_FLOPS: dict[str, float] = {prefix: chip.peak_bf16_flops for chip in CHIPS.values()
                                for prefix in chip.device_kinds}


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
    chip = chip_for_device_kind(kind)
    if chip is not None:
        return chip.peak_bf16_flops * len(devices), f"table: {chip.label} (mdm.hardware)"
    return float("nan"), f"unknown device kind {kind!r} (add it to mdm.hardware.CHIPS)"
