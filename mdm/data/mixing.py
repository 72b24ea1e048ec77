"""Per-batch modality quotas from mixing ratios (DESIGN.md section 8).

quotas(B, r) gives integer row counts n_m with sum n_m = B and |n_m - B r_m| < 1, by the
largest-remainder method (ties broken in the fixed order text, image, audio), so every batch
holds exactly the same number of rows of each modality. Rows are laid out text, image, audio.
"""
from __future__ import annotations

import math
from typing import Mapping

from mdm.run_contract import MODALITIES


def quotas(batch_size: int, mixture: Mapping[str, float]) -> dict[str, int]:
    ratios = [float(mixture.get(m, 0.0)) for m in MODALITIES]
    total = sum(ratios)
    if total <= 0 or any(r < 0 for r in ratios):
        raise ValueError(f"mixing ratios must be >= 0 with a positive sum, got {dict(mixture)}")
    ideal = [batch_size * r / total for r in ratios]
    base = [math.floor(x) for x in ideal]
    left = batch_size - sum(base)
    order = sorted(range(3), key=lambda i: (-(ideal[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return dict(zip(MODALITIES, base))


def row_modalities(batch_size: int, mixture: Mapping[str, float]) -> list[str]:
    q = quotas(batch_size, mixture)
    return [m for m in MODALITIES for _ in range(q[m])]
