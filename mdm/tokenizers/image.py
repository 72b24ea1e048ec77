"""Learned discrete image tokenizer: a small convolutional autoencoder with an FSQ bottleneck.

    x [B, H, W, C] in [-1, 1]
      encoder: space-to-depth(p) -> Conv3x3(w_0) -> ResBlock*
               -> (stride-2 Conv4x4(w_i) -> ResBlock*) for i = 1 .. S
               -> Conv1x1(d)                                  z    [B, H/ds, W/ds, d]
      FSQ(levels):                                            zhat [B, H/ds, W/ds, d], index
      decoder: Conv3x3(w_S) -> ResBlock* -> (ConvT4x4 stride 2 (w_i) -> ResBlock*) for i = S-1..0
               -> Conv3x3(p*p*C) -> depth-to-space(p)         xhat [B, H, W, C]
    ds = p * 2^S pixels per token side
    loss = mean (x - xhat)^2      (pixels in [-1, 1]; straight-through FSQ gradient)

ResBlock(h) = h + Conv3x3(gelu(Conv3x3(gelu(h)))). Tokens are the FSQ indices of the latent grid
in raster order: (H/ds) * (W/ds) tokens per image, vocab prod(levels). The default (RGB 32x32,
p = 2, widths (32, 64) so ds = 4, levels (8, 5, 5, 5)) gives 8 x 8 = 64 tokens per image over
1000 codes and trains on a 2-core CPU in about a minute. Working at H/2 from the first conv
(space-to-depth) keeps the full-resolution FLOPs, the CPU bottleneck, out of the network.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mdm.tokenizers.base import TokenizerError
from mdm.tokenizers.fsq import FSQ
from mdm.tokenizers.learned import ConfigBase, LearnedTokenizer
from mdm.tokenizers.metrics import psnr
from mdm.tokenizers.training import TrainSettings, fit


@dataclasses.dataclass(frozen=True)
class ImageTokenizerConfig(ConfigBase):
    """Architecture of the image tokenizer (everything needed to rebuild it)."""

    image_size: int = 32                   # H = W
    channels: int = 3
    patch: int = 2                         # space-to-depth factor before the first conv
    widths: tuple[int, ...] = (32, 64)     # conv width per resolution; each extra entry halves
    blocks: int = 1                        # residual blocks per resolution
    levels: tuple[int, ...] = (8, 5, 5, 5)

    def __post_init__(self) -> None:
        if self.patch < 1 or not self.widths:
            raise TokenizerError(f"need patch >= 1 and at least one width, got patch="
                                 f"{self.patch}, widths={self.widths}")
        if self.image_size % self.downsample:
            raise TokenizerError(f"image_size {self.image_size} is not divisible by the "
                                 f"downsampling factor patch * 2^(len(widths) - 1) = "
                                 f"{self.downsample}")

    @property
    def downsample(self) -> int:
        """Pixels per token side: patch * 2^(number of stride-2 stages)."""
        return self.patch * 2 ** (len(self.widths) - 1)

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample

    @property
    def tokens_per_image(self) -> int:
        return self.grid * self.grid


def space_to_depth(x: jax.Array, p: int) -> jax.Array:
    """[B, H, W, C] -> [B, H/p, W/p, p*p*C] (non-overlapping p x p patches)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // p, w // p, p * p * c)


def depth_to_space(x: jax.Array, p: int) -> jax.Array:
    """[B, H/p, W/p, p*p*C] -> [B, H, W, C] (inverse of space_to_depth)."""
    b, h, w, pc = x.shape
    c = pc // (p * p)
    x = x.reshape(b, h, w, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c)


class ResBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:          # [B, H, W, F] -> same
        r = nn.Conv(self.features, (3, 3))(nn.gelu(h))
        r = nn.Conv(self.features, (3, 3))(nn.gelu(r))
        return h + r


class Encoder(nn.Module):
    cfg: ImageTokenizerConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:          # [B, H, W, C] -> [B, h, w, d]
        c = self.cfg
        h = nn.Conv(c.widths[0], (3, 3))(space_to_depth(x, c.patch))   # [B, H/p, W/p, w0]
        for i, w in enumerate(c.widths):
            if i > 0:
                h = nn.Conv(w, (4, 4), strides=(2, 2))(nn.gelu(h))   # resolution / 2
            for _ in range(c.blocks):
                h = ResBlock(w)(h)
        return nn.Conv(len(c.levels), (1, 1))(nn.gelu(h))


class Decoder(nn.Module):
    cfg: ImageTokenizerConfig

    @nn.compact
    def __call__(self, zhat: jax.Array) -> jax.Array:       # [B, h, w, d] -> [B, H, W, C]
        c = self.cfg
        widths = c.widths[::-1]
        h = nn.Conv(widths[0], (3, 3))(zhat)
        for i, w in enumerate(widths):
            if i > 0:
                h = nn.ConvTranspose(w, (4, 4), strides=(2, 2))(nn.gelu(h))  # resolution x 2
            for _ in range(c.blocks):
                h = ResBlock(w)(h)
        h = nn.Conv(c.patch * c.patch * c.channels, (3, 3))(nn.gelu(h))  # [B, H/p, W/p, p*p*C]
        return depth_to_space(h, c.patch)


class ImageAutoencoder(nn.Module):
    cfg: ImageTokenizerConfig

    def setup(self) -> None:
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)
        self.fsq = FSQ(self.cfg.levels)

    def __call__(self, x: jax.Array) -> jax.Array:          # [B, H, W, C] -> [B, H, W, C]
        return self.decoder(self.fsq.quantize(self.encoder(x)))

    def encode(self, x: jax.Array) -> jax.Array:            # [B, H, W, C] -> int32 [B, h, w]
        return self.fsq.codes_to_indices(self.fsq.quantize(self.encoder(x)))

    def decode(self, index: jax.Array) -> jax.Array:        # int [B, h, w] -> [B, H, W, C]
        return self.decoder(self.fsq.indices_to_codes(index))


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, C] in [0, 255] -> float32 in [-1, 1]."""
    return np.asarray(images, np.float32) / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float [..., H, W, C] in [-1, 1] -> uint8 [0, 255] (clipped, rounded)."""
    return np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class ImageTokenizer(LearnedTokenizer):
    """uint8 images [N, H, W, C] <-> int32 tokens [N, (H/ds) * (W/ds)] in raster order."""

    type_name = "fsq_image"
    kind = "image"
    config_cls = ImageTokenizerConfig

    @classmethod
    def build_module(cls, cfg: ImageTokenizerConfig) -> ImageAutoencoder:
        return ImageAutoencoder(cfg)

    @classmethod
    def _example_input(cls, cfg: ImageTokenizerConfig) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, cfg.channels),
                                    jnp.float32)

    # --- training ---------------------------------------------------------------------
    @classmethod
    def train(cls, images: np.ndarray, cfg: ImageTokenizerConfig | None = None,
              settings: TrainSettings | None = None, *, heldout: np.ndarray | None = None,
              l1_weight: float = 0.0, progress: bool = True) -> "ImageTokenizer":
        """Train on uint8 images [N, H, W, C] with loss mean (x - xhat)^2 + l1_weight *
        mean |x - xhat|; report held-out PSNR in `train_log`."""
        cfg = cfg or ImageTokenizerConfig()
        settings = settings or TrainSettings()
        data = to_model_input(cls._check_images(images, cfg))      # [N, H, W, C] in [-1, 1]
        module = cls.build_module(cfg)

        def loss_fn(params: Any, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            xhat = module.apply(params, x)
            mse = jnp.mean((x - xhat) ** 2)
            l1 = jnp.mean(jnp.abs(x - xhat))
            return mse + l1_weight * l1, {"mse": mse, "l1": l1}

        def sample(rng: np.random.Generator, b: int) -> np.ndarray:
            return data[rng.integers(0, data.shape[0], size=b)]

        params = cls.init_params(cfg, settings.seed)
        res = fit(loss_fn, params, sample, settings, desc="image tokenizer", progress=progress)
        tok = cls(cfg, res.params, {"settings": dataclasses.asdict(settings),
                                    "l1_weight": l1_weight,
                                    "train_seconds": res.seconds, "num_train": len(data),
                                    "history": res.history})
        if heldout is not None:
            tok.train_log["heldout"] = tok.evaluate(heldout)
        tok.train_log["num_params"] = tok.num_params()
        return tok

    def evaluate(self, images: np.ndarray) -> dict[str, float]:
        """Reconstruction quality on uint8 images: PSNR (dB) after encode -> decode."""
        images = self._check_images(images, self.cfg)
        codes = self.encode(images)
        recon = self.decode(codes)
        return {"psnr_db": psnr(images, recon), "num_images": int(len(images)),
                "codes_used": int(len(np.unique(codes)))}

    # --- the mapping ------------------------------------------------------------------
    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] (or one [H, W, C]) -> int32 [N, T] (or [T]), T = tokens/image."""
        single = np.ndim(images) == 3
        x = self._check_images(images[None] if single else images, self.cfg)
        idx = self.encode_latents(to_model_input(x))                     # [N, h, w]
        idx = idx.reshape(idx.shape[0], -1)                              # [N, h * w]
        return idx[0] if single else idx

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """int [N, T] (or [T]) -> uint8 [N, H, W, C] (or [H, W, C])."""
        tokens = np.asarray(tokens)
        single = tokens.ndim == 1
        t = tokens[None] if single else tokens
        g = self.cfg.grid
        if t.ndim != 2 or t.shape[1] != g * g:
            raise TokenizerError(f"image tokens must have shape [N, {g * g}], got {tokens.shape}")
        x = self.decode_latents(t.reshape(-1, g, g))                     # [N, H, W, C]
        out = to_uint8(x)
        return out[0] if single else out

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(images))

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().describe(), "image_size": [c.image_size, c.image_size, c.channels],
                "downsample": c.downsample, "token_grid": [c.grid, c.grid],
                "tokens_per_image": c.tokens_per_image, "levels": list(c.levels)}

    @staticmethod
    def _check_images(images: np.ndarray, cfg: ImageTokenizerConfig) -> np.ndarray:
        a = np.asarray(images)
        want = (cfg.image_size, cfg.image_size, cfg.channels)
        if a.ndim != 4 or a.shape[1:] != want:
            raise TokenizerError(f"images must have shape [N, {want[0]}, {want[1]}, {want[2]}], "
                                 f"got {a.shape}")
        if a.dtype != np.uint8:
            raise TokenizerError(f"images must be uint8 in [0, 255], got dtype {a.dtype}")
        return a
