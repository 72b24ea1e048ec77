"""Finite scalar quantization (FSQ; Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE
Made Simple"), the quantizer of the image and audio tokenizers.

A latent vector z in R^d (d = len(levels)) is quantized per dimension to L_i levels:

    h_i       = (L_i - 1) / 2
    o_i       = 1/2 if L_i is even else 0
    bound(z)_i = h_i tanh(z_i)                                  in (-h_i, h_i)
    q_i       = round_ste(bound(z)_i - o_i) + o_i               in {-h_i, -h_i + 1, ..., h_i}
    zhat_i    = q_i / h_i                                       in [-1, 1]

round_ste(x) = x + stop_gradient(round(x) - x): the forward pass rounds, the backward pass is the
identity (straight-through), so d zhat_i / d z_i = 1 - tanh(z_i)^2 > 0.

This is the symmetric form of FSQ: for even L_i the grid is the half-integers (e.g. L = 8:
-3.5 .. 3.5) instead of the paper's integers shifted by atanh(1/2 / h_i). Both give exactly L_i
levels per dimension; the symmetric form needs no atanh shift and so also supports L_i = 2
(the paper's shift is undefined there).

The implicit codebook is the product grid, prod(L_i) codes with no learned parameters and no
codebook collapse. The code index is the mixed-radix number of the per-dimension digits
k_i = q_i + h_i in {0, ..., L_i - 1}:

    index = sum_i k_i * b_i,   b_i = prod_{j < i} L_j      (b_0 = 1)
    k_i   = (index // b_i) mod L_i                          (inverse)

Default levels (8, 5, 5, 5) give 1000 codes, about 10 bits per token.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def round_ste(x: Array) -> Array:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


@dataclasses.dataclass(frozen=True)
class FSQ:
    """Finite scalar quantizer over `levels` (one entry per latent dimension, each >= 2)."""

    levels: tuple[int, ...] = (8, 5, 5, 5)

    def __post_init__(self) -> None:
        levels = tuple(int(l) for l in self.levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be a non-empty sequence of ints >= 2, got "
                             f"{self.levels!r}")
        object.__setattr__(self, "levels", levels)

    # --- static facts ---------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Latent dimension d = len(levels)."""
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        """prod(levels): the number of distinct codes (the tokenizer's vocab size)."""
        return math.prod(self.levels)

    @property
    def half_width(self) -> np.ndarray:
        """h = (L - 1) / 2 per dimension, float32 [d]."""
        return (np.asarray(self.levels, np.float32) - 1.0) / 2.0

    @property
    def _offset(self) -> np.ndarray:
        return np.where(np.mod(self.levels, 2) == 0, 0.5, 0.0).astype(np.float32)  # [d]

    @property
    def _basis(self) -> np.ndarray:
        return np.cumprod([1] + list(self.levels[:-1])).astype(np.int64)  # [d]

    # --- forward ------------------------------------------------------------------------
    def bound(self, z: Array) -> Array:
        """[..., d] -> [..., d] in (-h, h): tanh squashing so that rounding gives L values."""
        return jnp.tanh(z) * self.half_width

    def quantize(self, z: Array) -> Array:
        """[..., d] float -> [..., d] zhat on the normalised grid in [-1, 1] (straight-through)."""
        self._check_dim(z)
        q = round_ste(self.bound(z) - self._offset) + self._offset     # [..., d] in {-h..h}
        return q / self.half_width

    def __call__(self, z: Array) -> tuple[Array, Array]:
        """[..., d] -> (zhat [..., d] float32, index [...] int32)."""
        zhat = self.quantize(z)
        return zhat, self.codes_to_indices(zhat)

    # --- codes <-> indices ----------------------------------------------------------------
    def codes_to_indices(self, zhat: Array) -> Array:
        """[..., d] normalised codes -> [...] int32 mixed-radix index in [0, codebook_size)."""
        self._check_dim(zhat)
        h = self.half_width
        digits = jnp.round(zhat * h + h).astype(jnp.int32)                      # [..., d]
        return jnp.sum(digits * jnp.asarray(self._basis, jnp.int32), axis=-1).astype(jnp.int32)

    def indices_to_codes(self, index: Array) -> Array:
        """[...] int index -> [..., d] float32 normalised codes (inverse of codes_to_indices)."""
        index = jnp.asarray(index, jnp.int32)[..., None]                        # [..., 1]
        basis = jnp.asarray(self._basis, jnp.int32)                              # [d]
        levels = jnp.asarray(self.levels, jnp.int32)                             # [d]
        digits = (index // basis) % levels                                       # [..., d]
        h = self.half_width
        return (digits.astype(jnp.float32) - h) / h

    def _check_dim(self, z: Array) -> None:
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ with levels {self.levels} expects last dim {self.dim}, got "
                             f"shape {tuple(z.shape)}")


def parse_levels(levels: Sequence[int] | str) -> tuple[int, ...]:
    """(8, 5, 5, 5) or "8,5,5,5" -> (8, 5, 5, 5)."""
    if isinstance(levels, str):
        levels = [int(s) for s in levels.replace("x", ",").split(",") if s.strip()]
    return FSQ(tuple(levels)).levels
