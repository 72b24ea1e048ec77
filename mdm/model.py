"""Bidirectional pre-norm transformer for masked diffusion (DESIGN.md section 5), Flax Linen.

    x = Embed(x_t)                                                  [B, L, D]
    for each of `depth` blocks (nn.scan over a 'layers' axis):
        x = x + r * Attention(RMSNorm(x))    bidirectional, rotary, optional QK-norm,
                                             attention only within a segment (PAD sees nothing)
        x = x + r * SwiGLU(RMSNorm(x))       W_o (silu(W_0 x) * (W_1 x))
    logits = m_out * Head(RMSNorm(x))                               [B, L, V] (float32)

No time input (the model infers the noise level from the number of MASK tokens). Every parameter
and activation carries logical axis names; `mdm.sharding` maps them onto mesh axes:

    params:      vocab, embed, heads, kv, mlp, norm, layers
    activations: activation_batch, activation_length, activation_embed, activation_heads,
                 activation_kv, activation_mlp, activation_vocab

Parameterizations (`parameterization`):
  * "standard": every weight ~ N(0, init_std^2); residual output projections (attention out,
    MLP out) use init_std / sqrt(2 depth) (GPT-2); r = 1, m_out = 1.
  * "completep": CompleteP (depth-muP with alpha = 1, Dey et al. 2025) relative to a base shape
    (base_width, base_depth). With m_w = width / base_width and m_d = depth / base_depth:
    hidden weights ~ N(0, init_std^2 / m_w) (variance ~ 1 / fan_in), embedding ~ N(0, init_std^2),
    residual multiplier r = m_d^(-depth_alpha), output multiplier m_out = 1 / m_w; the optimizer
    side (per-group learning rate, weight decay and Adam eps, the CompleteP table) is in
    `mdm.optim.group_multipliers`. Hyperparameters tuned at the base shape then transfer along
    a model ladder.

Attention logit scale (`attn_scale`): "sqrt" is 1 / sqrt(d_head); "mup" is the muP / CompleteP
1 / d_head, written sqrt(d_base) / d_head with d_base = `base_head_dim` (0 -> base_width //
num_heads) so that it equals 1 / sqrt(d_head) at the base head size and the base shape's
tuned hyperparameters carry over unchanged; "auto" is "mup" under CompleteP, "sqrt" otherwise.
With a fixed head size (heads grow with width, as on experiments/ladder.py below width 256)
the two coincide; they differ where d_head grows, where 1 / d_head keeps the q.k logits O(1)
once q and k align during training (Yang et al. 2022, muP section 4).

Attention implementation (`attention`): einsum (the explicit path in Attention below), xla,
cudnn or splash, "auto" resolved at trace time from jax.default_backend()
(mdm.attention.resolve_attention: einsum on CPU, cudnn on GPU, splash on TPU).

Defaults chosen where the paper is silent: SwiGLU hidden size 8/3 * width rounded up to a
multiple of 64, head_dim = width / num_heads, rotary theta 10000, RMSNorm eps 1e-6, untied
embedding and output head, QK-norm off.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mdm.attention import check_attention, dot_product, resolve_attention, splash_attention
from mdm.matmul import matmul
from mdm.softmax_attention import softmax_attention

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    width: int = 128
    depth: int = 2
    num_heads: int = 4
    head_dim: int = 0            # 0 -> width // num_heads
    mlp_dim: int = 0             # 0 -> 8/3 width rounded up to a multiple of 64
    qk_norm: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    dtype: str = "float32"       # compute dtype: float32 or bfloat16
    param_dtype: str = "float32"
    init_std: float = 0.02
    parameterization: str = "standard"  # standard | completep
    base_width: int = 128
    base_depth: int = 2
    depth_alpha: float = 1.0
    attn_scale: str = "auto"     # auto | sqrt | mup (module docstring)
    base_head_dim: int = 0       # head size at the base shape (0 -> base_width // num_heads)
    scan_layers: bool = True
    remat: bool = False
    attention: str = "auto"      # auto | einsum | xla | cudnn | splash (mdm.attention)

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.width // self.num_heads

    @property
    def resolved_mlp_dim(self) -> int:
        if self.mlp_dim:
            return self.mlp_dim
        return int(math.ceil(8 * self.width / 3 / 64) * 64)

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width if self.parameterization == "completep" else 1.0

    @property
    def depth_mult(self) -> float:
        return self.depth / self.base_depth if self.parameterization == "completep" else 1.0

    @property
    def residual_scale(self) -> float:
        return self.depth_mult ** (-self.depth_alpha)

    @property
    def output_mult(self) -> float:
        return 1.0 / self.width_mult

    @property
    def attention_scale(self) -> float:
        """The q.k logit multiplier: 1/sqrt(d_head) ("sqrt") or sqrt(d_base)/d_head ("mup")."""
        rule = self.attn_scale
        if rule == "auto":
            rule = "mup" if self.parameterization == "completep" else "sqrt"
        dh = self.resolved_head_dim
        if rule == "sqrt":
            return 1.0 / math.sqrt(dh)
        if rule == "mup":
            d_base = self.base_head_dim or self.base_width // self.num_heads
            return math.sqrt(d_base) / dh
        raise ValueError(f"unknown attn_scale {self.attn_scale!r}; expected auto, sqrt or mup")

    def hidden_init_std(self) -> float:
        return self.init_std / math.sqrt(self.width_mult)

    def residual_out_init_std(self) -> float:
        if self.parameterization == "completep":
            return self.hidden_init_std()
        return self.init_std / math.sqrt(2 * self.depth)


def _dtype(name: str) -> Any:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def _init(std: float, axes: tuple[str, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev=std), axes)


def _constrain(x: Array, axes: tuple[str, ...]) -> Array:
    return nn.with_logical_constraint(x, axes)


class RMSNorm(nn.Module):
    eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                           (x.shape[-1],), self.param_dtype)
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * scale.astype(jnp.float32)).astype(self.dtype)


def segment_positions(segment_ids: Array) -> Array:
    """Position of each token within its segment (rotary positions restart per document).

    segment_ids: int [B, L] -> int32 [B, L].
    """
    L = segment_ids.shape[-1]
    idx = jnp.arange(L, dtype=jnp.int32)[None, :]
    prev = jnp.concatenate([jnp.full_like(segment_ids[:, :1], -1), segment_ids[:, :-1]], axis=1)
    starts = jnp.where(segment_ids != prev, idx, 0)
    return idx - jax.lax.cummax(starts, axis=1)


def rotary_tables(positions: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
    """(sin, cos), each float32 [B, L, 1, Dh/2], of angle p * theta^(-j / (Dh/2)), j < Dh/2.

    Computed once per forward pass from a [L, Dh/2] table gathered at the positions (a position
    within a segment is < L), so the transcendentals run L * Dh/2 times, not once per element of
    every q and k of every layer (which XLA:CPU does when the angles fuse into their consumers).
    """
    L = positions.shape[-1]
    half = head_dim // 2
    freq = theta ** (-np.arange(half, dtype=np.float64) / half)                # [Dh/2]
    ang = np.arange(L, dtype=np.float64)[:, None] * freq                        # [L, Dh/2]
    sin = jnp.take(jnp.asarray(np.sin(ang), jnp.float32), positions, axis=0)   # [B, L, Dh/2]
    cos = jnp.take(jnp.asarray(np.cos(ang), jnp.float32), positions, axis=0)
    return sin[:, :, None, :], cos[:, :, None, :]


def apply_rotary(x: Array, rotary: tuple[Array, Array]) -> Array:
    """Rotary embedding on the last dim (split halves), float32 arithmetic, result in x.dtype.

    x: [B, L, H, Dh]; rotary = rotary_tables(...) ([B, L, 1, Dh/2] each)."""
    sin, cos = rotary
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, segment_ids: Array,
                 rotary: tuple[Array, Array]) -> Array:
        """mask: bool [B, 1, L, L] (None under splash, which reads segment_ids [B, L])."""
        c = self.cfg
        dt, pdt = _dtype(c.dtype), _dtype(c.param_dtype)
        H, Dh = c.num_heads, c.resolved_head_dim
        impl = resolve_attention(c, jax.default_backend())

        def proj(name: str) -> Array:
            w = self.param(name, _init(c.hidden_init_std(), ("embed", "heads", "kv")),
                           (c.width, H, Dh), pdt)
            return matmul(x, w.reshape(c.width, H * Dh), dt).reshape(*x.shape[:-1], H, Dh)

        q, k, v = proj("query"), proj("key"), proj("value")                 # [B, L, H, Dh]
        if c.qk_norm:
            q = RMSNorm(c.norm_eps, dt, pdt, name="query_norm")(q)
            k = RMSNorm(c.norm_eps, dt, pdt, name="key_norm")(k)
        q = apply_rotary(q, rotary)
        k = apply_rotary(k, rotary)
        act = ("activation_batch", "activation_length", "activation_heads", "activation_kv")
        q, k, v = _constrain(q, act), _constrain(k, act), _constrain(v, act)
        if impl == "einsum":       # explicit softmax, custom VJP (mdm.softmax_attention)
            out = softmax_attention(q, k, v, mask, c.attention_scale, dt)  # [B, L, H, Dh]
        elif impl == "splash":
            out = splash_attention(q, k, v, segment_ids, c.attention_scale)
        else:                                                              # xla | cudnn
            out = dot_product(q, k, v, mask, c.attention_scale, impl).astype(dt)
        out = _constrain(out, act)
        w_out = self.param("out", _init(c.residual_out_init_std(), ("heads", "kv", "embed")),
                           (H, Dh, c.width), pdt)
        return matmul(out.reshape(*out.shape[:-2], H * Dh), w_out.reshape(H * Dh, c.width), dt)


class Dense(nn.Module):
    """y = x W without bias through mdm.matmul (bf16 operands, f32 accumulation); the kernel
    [in, out] is stored as {name: {kernel}}, the layout of flax's nn.Dense."""
    features: int
    dtype: Any
    param_dtype: Any
    kernel_init: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        w = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)
        return matmul(x, w, self.dtype)


class SwiGLU(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.cfg
        dt, pdt = _dtype(c.dtype), _dtype(c.param_dtype)
        F = c.resolved_mlp_dim

        def dense(name: str, inp: Array, feats: int, std: float, axes: tuple[str, str]) -> Array:
            return Dense(feats, dt, pdt, _init(std, axes), name=name)(inp)

        gate = dense("wi_0", x, F, c.hidden_init_std(), ("embed", "mlp"))
        up = dense("wi_1", x, F, c.hidden_init_std(), ("embed", "mlp"))
        h = _constrain(nn.silu(gate) * up, ("activation_batch", "activation_length", "activation_mlp"))
        return dense("wo", h, c.width, c.residual_out_init_std(), ("mlp", "embed"))


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, segment_ids: Array,
                 rotary: tuple[Array, Array]) -> tuple[Array, None]:
        c = self.cfg
        dt, pdt = _dtype(c.dtype), _dtype(c.param_dtype)
        r = c.residual_scale
        h = RMSNorm(c.norm_eps, dt, pdt, name="attn_norm")(x)
        x = x + r * Attention(c, name="attn")(h, mask, segment_ids, rotary)
        h = RMSNorm(c.norm_eps, dt, pdt, name="mlp_norm")(x)
        x = x + r * SwiGLU(c, name="mlp")(h)
        x = _constrain(x, ("activation_batch", "activation_length", "activation_embed"))
        return x, None


class Transformer(nn.Module):
    """tokens [B, L] int32, segment_ids [B, L] int32 -> logits [B, L, V] float32."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens: Array, segment_ids: Array) -> Array:
        c = self.cfg
        dt, pdt = _dtype(c.dtype), _dtype(c.param_dtype)
        emb = self.param("embedding", _init(c.init_std, ("vocab", "embed")),
                         (c.vocab_size, c.width), pdt)
        x = jnp.take(emb, tokens, axis=0).astype(dt)                        # [B, L, D]
        x = _constrain(x, ("activation_batch", "activation_length", "activation_embed"))
        # Attention only within a segment; no real token attends to PAD (segment 0). Splash
        # reads the segment ids itself (PAD rows: mdm.attention docstring).
        impl = resolve_attention(c, jax.default_backend())
        check_attention(impl, jax.default_backend(), c.dtype)
        mask = None
        if impl != "splash":
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            mask = (same & (segment_ids[:, :, None] > 0))[:, None]          # [B, 1, L, L]
        rotary = rotary_tables(segment_positions(segment_ids), c.resolved_head_dim, c.rope_theta)
        block = Block
        if c.remat:
            block = nn.remat(block, prevent_cse=not c.scan_layers)
        if c.scan_layers:
            stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                            length=c.depth, metadata_params={nn.PARTITION_NAME: "layers"})
            x, _ = stack(c, name="layers")(x, mask, segment_ids, rotary)
        else:
            for i in range(c.depth):
                x, _ = block(c, name=f"layer_{i}")(x, mask, segment_ids, rotary)
        x = RMSNorm(c.norm_eps, dt, pdt, name="final_norm")(x)
        head = self.param("head", _init(c.hidden_init_std(), ("embed", "vocab")),
                          (c.width, c.vocab_size), pdt)
        logits = matmul(x, head, dt, out_dtype=jnp.float32)                # [B, L, V] f32
        logits = logits * c.output_mult
        return _constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))


# --- parameter groups and counts ------------------------------------------------------------
EMBEDDING_KEYS = ("embedding",)
OUTPUT_KEYS = ("head",)


def param_group(path: tuple[str, ...]) -> str:
    """'embedding' | 'output' | 'norm' | 'hidden' for a parameter path (tuple of keys)."""
    name = path[-1]
    if path[0] in EMBEDDING_KEYS:
        return "embedding"
    if path[0] in OUTPUT_KEYS:
        return "output"
    if name == "scale":
        return "norm"
    return "hidden"


def _path_keys(path) -> tuple[str, ...]:
    return tuple(getattr(p, "key", getattr(p, "name", str(p))) for p in path)


def param_groups(params: Any) -> Any:
    """Same-structure tree of group names."""
    return jax.tree_util.tree_map_with_path(lambda p, _: param_group(_path_keys(p)), params)


def count_params(params: Any) -> dict[str, int]:
    """Measured from the (possibly abstract) parameter tree: total, embedding, non-embedding.

    Non-embedding excludes the input embedding table only; the output head is counted (it is
    a matmul on every token). `head` is reported separately for the FLOPs formula.
    """
    out = {"params_total": 0, "params_embedding": 0, "params_head": 0}
    for path, leaf in jax.tree_util.tree_flatten_with_path(nn.unbox(params))[0]:
        n = int(math.prod(leaf.shape))
        out["params_total"] += n
        g = param_group(_path_keys(path))
        if g == "embedding":
            out["params_embedding"] += n
        elif g == "output":
            out["params_head"] += n
    out["params_non_embedding"] = out["params_total"] - out["params_embedding"]
    return out
