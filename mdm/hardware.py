"""Accelerator chips and named targets: published dense bf16 peak FLOP/s and HBM per chip.

The one table of accelerator figures: mdm.throughput (MFU of a running job) and mdm.plan
(--target: predicted step time, memory fit) both read it. Pure Python, no JAX: mdm.plan parses
a target before JAX starts, to set the number of fake devices.

Peaks are dense (no structured sparsity) bfloat16 matrix-unit peaks per chip, from the vendors'
spec pages (cited beside each entry). HBM is per chip, in the vendor's unit: Google states
GiB for its TPUs (GB on some pages), NVIDIA states decimal GB.

Target names (`parse_target`):

    <tpu>-<N>      a Cloud TPU slice as its accelerator type is written. For v4 and v5p, N counts
                   TensorCores, two per chip: v5p-64 is 32 chips (topology 2x4x4), v4-8 is 4
                   chips. For v5e (v5litepod-N) and v6e, one TensorCore per chip: N is chips;
                   tpu7x-N is read as N chips too (check the provider's naming first).
    <N>x<gpu>      N GPUs of one kind, e.g. 8xH100 (one HGX / DGX node).

Sources:
  TPU v4   https://cloud.google.com/tpu/docs/v4     275 TFLOPs bf16, 32 GiB HBM2, 2 TC/chip
  TPU v5e  https://cloud.google.com/tpu/docs/v5e    197 TFLOPs bf16, 16 GB HBM2, 1 TC/chip
  TPU v5p  https://cloud.google.com/tpu/docs/v5p    459 TFLOPs bf16, 95 GiB HBM2e, 2 TC/chip;
           "--accelerator-type ... specify the number of TensorCores" (v5p-training page)
  TPU v6e  https://cloud.google.com/tpu/docs/v6e    918 TFLOPs bf16, 32 GB HBM, 1 TC/chip
  TPU7x    https://cloud.google.com/tpu/docs/tpu7x  2307 TFLOPs bf16, 192 GiB HBM
  A100     https://www.nvidia.com/en-us/data-center/a100/   SXM 80GB: 312 TFLOPS bf16 dense
  H100     https://www.nvidia.com/en-us/data-center/h100/   SXM: 1,979 TFLOPS bf16 "with
           sparsity" = 989 dense, 80 GB HBM3
  H200     https://www.nvidia.com/en-us/data-center/h200/   SXM: 989 dense bf16, 141 GB HBM3e
  GH200    https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/  989 dense, 96 GB
  B200     https://www.nvidia.com/en-us/data-center/hgx/    HGX B200: 2.25 PFLOPS dense bf16 per
           GPU (18 PFLOPS FP16 sparse / 8), 180 GB HBM3e per GPU (1.44 TB / 8)
"""
from __future__ import annotations

import dataclasses
import re

GiB = 2 ** 30
GB = 10 ** 9


class TargetError(ValueError):
    """An unknown or malformed --target; the message is one line and lists the known chips."""


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str                   # short name used in target names (lower case)
    label: str                  # how to print it
    backend: str                # jax.default_backend() on it: tpu | gpu
    peak_bf16_flops: float      # dense bf16 FLOP/s per chip
    hbm_bytes: float            # HBM per chip
    device_kinds: tuple[str, ...]  # prefixes of jax Device.device_kind on this chip
    cores_per_chip: int = 1     # TensorCores per chip (TPU slice names count cores)


CHIPS: dict[str, Chip] = {c.name: c for c in (
    Chip("v4", "TPU v4", "tpu", 275e12, 32 * GiB, ("TPU v4",), cores_per_chip=2),
    Chip("v5e", "TPU v5e", "tpu", 197e12, 16 * GiB, ("TPU v5 lite", "TPU v5e")),
    Chip("v5p", "TPU v5p", "tpu", 459e12, 95 * GiB, ("TPU v5p", "TPU v5"), cores_per_chip=2),
    Chip("v6e", "TPU v6e", "tpu", 918e12, 32 * GiB, ("TPU v6 lite", "TPU v6e")),
    Chip("tpu7x", "TPU7x", "tpu", 2307e12, 192 * GiB, ("TPU7x",)),
    Chip("a100", "NVIDIA A100 SXM", "gpu", 312e12, 80 * GB, ("NVIDIA A100",)),
    Chip("h100", "NVIDIA H100 SXM", "gpu", 989e12, 80 * GB, ("NVIDIA H100",)),
    Chip("h200", "NVIDIA H200 SXM", "gpu", 989e12, 141 * GB, ("NVIDIA H200",)),
    Chip("gh200", "NVIDIA GH200", "gpu", 989e12, 96 * GB, ("NVIDIA GH200",)),
    Chip("b200", "NVIDIA B200", "gpu", 2250e12, 180 * GB, ("NVIDIA B200",)),
)}
# accelerator-type spellings of the TPU chips (v5litepod-16 is a v5e slice of 16 chips)
_TPU_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e", "v6lite": "v6e"}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str                   # as given, e.g. v5p-64 or 8xH100
    chip: Chip
    num_chips: int

    @property
    def peak_flops(self) -> float:
        """Dense bf16 FLOP/s of the whole target."""
        return self.chip.peak_bf16_flops * self.num_chips

    def describe(self) -> str:
        return (f"{self.name} = {self.num_chips} x {self.chip.label} "
                f"({self.chip.peak_bf16_flops / 1e12:.0f} TFLOP/s dense bf16, "
                f"{_mem(self.chip.hbm_bytes)} HBM per chip)")


def _mem(b: float) -> str:
    return f"{b / GiB:.0f} GiB" if b % GiB == 0 else f"{b / GB:.0f} GB"


def _known() -> str:
    tpus = ", ".join(f"{c.name}-N" for c in CHIPS.values() if c.backend == "tpu")
    gpus = ", ".join(f"Nx{c.name.upper()}" for c in CHIPS.values() if c.backend == "gpu")
    return f"{tpus} (TPU slices; v4/v5p N = TensorCores = 2 x chips), {gpus} (GPUs)"


def parse_target(text: str) -> Target:
    """'v5p-64' -> 32 x v5p; 'v5e-16' / 'v5litepod-16' -> 16 x v5e; '8xH100' -> 8 x h100."""
    s = text.strip()
    m = re.fullmatch(r"(\d+)\s*[xX]\s*([A-Za-z0-9]+)", s)
    if m:
        n, name = int(m.group(1)), m.group(2).lower()
        chip = CHIPS.get(name)
        if chip is None or chip.backend != "gpu":
            raise TargetError(f"--target {text!r}: unknown GPU {m.group(2)!r}; known: {_known()}")
        if n < 1:
            raise TargetError(f"--target {text!r}: the GPU count must be >= 1")
        return Target(s, chip, n)
    m = re.fullmatch(r"([A-Za-z0-9]+)-(\d+)", s)
    if m:
        name = _TPU_ALIASES.get(m.group(1).lower(), m.group(1).lower())
        chip = CHIPS.get(name)
        if chip is None or chip.backend != "tpu":
            raise TargetError(f"--target {text!r}: unknown TPU {m.group(1)!r}; known: {_known()}")
        cores = int(m.group(2))
        if cores < chip.cores_per_chip or cores % chip.cores_per_chip:
            raise TargetError(f"--target {text!r}: {chip.label} slice names count TensorCores, "
                              f"{chip.cores_per_chip} per chip; N must be a positive multiple of "
                              f"{chip.cores_per_chip}")
        return Target(s, chip, cores // chip.cores_per_chip)
    raise TargetError(f"--target {text!r}: expected a TPU slice (v5p-64) or N x GPU (8xH100); "
                      f"known: {_known()}")


def chip_for_device_kind(kind: str) -> Chip | None:
    """The chip whose device-kind prefix matches `kind` (the longest prefix wins)."""
    best, best_len = None, -1
    for chip in CHIPS.values():
        for prefix in chip.device_kinds:
            if kind.lower().startswith(prefix.lower()) and len(prefix) > best_len:
                best, best_len = chip, len(prefix)
    return best
