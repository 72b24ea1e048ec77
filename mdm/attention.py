"""Attention implementations behind one call, chosen by ModelConfig.attention (DESIGN.md section 5).

    out = attend(impl, q, k, v, mask, segment_ids, scale, dtype)     q, k, v, out: [B, L, H, Dh]

    "einsum"  the explicit path written in mdm.model.Attention (scores in float32 from the
              compute-dtype operands, where(mask, s, -1e30), softmax in float32, probs @ v);
              this module does not run it, the model does, unchanged;
    "xla"     jax.nn.dot_product_attention(..., implementation="xla") with the same boolean mask;
    "cudnn"   the same with implementation="cudnn" (cuDNN flash attention): GPU only, bfloat16
              or float16 compute; the boolean mask reaches cuDNN as an additive bias [B, 1, L, L];
    "splash"  TPU Pallas splash attention (jax.experimental.pallas.ops.tpu.splash_attention):
              a FullMask per head and SegmentIds from the model's segment ids, so a token sees
              exactly its own segment; q is multiplied by the scale first (splash has no scale
              argument). Under a mesh it runs per shard (shard_map over the batch and head axes
              of the logical rules); a Pallas kernel cannot be partitioned by GSPMD;
    "auto"    resolve_attention: einsum on CPU (jax.nn.dot_product_attention's XLA path ran at
              27 GFLOP/s against ~300 for the einsum path on this 2-core CPU), cudnn on GPU with
              bfloat16 / float16 compute (xla with float32), splash on TPU.

PAD (segment 0): no real token attends to a PAD position under any implementation (PAD keys
differ in segment from every real query). A PAD *query* row is fully masked in einsum / xla /
cudnn, where the softmax of a row of equal large negatives is uniform over all L keys (real ones
included); under splash segment 0 is a segment like any other, so a PAD row averages the PAD
positions only. PAD outputs therefore differ between implementations, and nothing reads them:
a real position never attends to PAD, and the loss (mdm.objective.elbo_sums) sums over masked
content positions only, which are never PAD. tests/test_model.py checks that outputs at real
positions and the parameter gradients of the loss agree across implementations.

Splash on a backend other than TPU runs only in Pallas interpret mode (slow; for tests):
`with splash_interpret(): ...` around the trace, or `splash_attention(..., interpret=True)`.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import jax
import jax.numpy as jnp

Array = jax.Array

ATTENTION_IMPLS: tuple[str, ...] = ("auto", "einsum", "xla", "cudnn", "splash")
LOW_PRECISION = ("bfloat16", "float16")
SPLASH_BLOCK = 512            # largest splash tile (q and kv); L must be a multiple of 128

_interpret = False            # splash in Pallas interpret mode (see splash_interpret)


class AttentionError(ValueError):
    """An attention implementation cannot run here; the message is one line."""


@contextlib.contextmanager
def splash_interpret(enabled: bool = True) -> Iterator[None]:
    """Run splash attention in Pallas interpret mode (any backend) for code traced inside."""
    global _interpret
    old, _interpret = _interpret, enabled
    try:
        yield
    finally:
        _interpret = old


def _is_gpu(backend: str) -> bool:
    return backend in ("gpu", "cuda", "rocm")


def resolve_attention(cfg: Any, backend: str) -> str:
    """The implementation `cfg.attention` means on `backend` (jax.default_backend() names).

    cfg: anything with .attention and .dtype (mdm.model.ModelConfig, or the config's model
    section). "auto" -> splash on tpu; on gpu cudnn with bfloat16 / float16 compute, else xla;
    einsum elsewhere (cpu). Other values are returned as given (checked by check_attention)."""
    impl = cfg.attention
    if impl not in ATTENTION_IMPLS:
        raise AttentionError(f"unknown attention implementation {impl!r}; expected one of "
                             f"{', '.join(ATTENTION_IMPLS)}")
    if impl != "auto":
        return impl
    if backend == "tpu":
        return "splash"
    if _is_gpu(backend):
        return "cudnn" if cfg.dtype in LOW_PRECISION else "xla"
    return "einsum"


def check_attention(impl: str, backend: str, dtype: str) -> None:
    """One-line AttentionError if `impl` cannot run on `backend` with compute `dtype`."""
    if impl == "cudnn":
        if not _is_gpu(backend):
            raise AttentionError(f"attention 'cudnn' needs a GPU, but the backend is {backend!r}; "
                                 "use attention=auto, einsum or xla")
        if dtype not in LOW_PRECISION:
            raise AttentionError(f"attention 'cudnn' needs bfloat16 or float16 compute, got "
                                 f"model.dtype={dtype!r}; use attention=xla or auto")
    if impl == "splash" and backend != "tpu" and not _interpret:
        raise AttentionError(f"attention 'splash' is a TPU kernel, but the backend is {backend!r} "
                             "(tests: mdm.attention.splash_interpret()); use attention=auto")


def dot_product(q: Array, k: Array, v: Array, mask: Array, scale: float, impl: str) -> Array:
    """jax.nn.dot_product_attention, implementation 'xla' or 'cudnn'. mask: bool [B, 1, L, L]."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, implementation=impl)


# --- splash ---------------------------------------------------------------------------------

def _splash_block(L: int) -> int:
    if L % 128:
        raise AttentionError(f"attention 'splash' needs a sequence length that is a multiple of "
                             f"128 (its kv tile is a multiple of the 128 TPU lanes), got {L}")
    b = min(SPLASH_BLOCK, L)
    while L % b:
        b -= 128
    return b


def _splash_kernel(num_heads: int, L: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu import splash_attention as sa
    b = _splash_block(L)
    mask = sa.MultiHeadMask([sa.FullMask((L, L)) for _ in range(num_heads)])
    blocks = sa.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                           block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
    return sa.make_splash_mha(mask, block_sizes=blocks, head_shards=1, q_seq_shards=1,
                              interpret=interpret)


def _splash_local(q: Array, k: Array, v: Array, segment_ids: Array, interpret: bool) -> Array:
    """q, k, v [b, h, L, Dh] (one shard), segment_ids [b, L] -> [b, h, L, Dh]."""
    from jax.experimental.pallas.ops.tpu.splash_attention import SegmentIds
    kernel = _splash_kernel(q.shape[1], q.shape[2], interpret)
    seg = segment_ids.astype(jnp.int32)
    return jax.vmap(lambda q1, k1, v1, s1: kernel(q1, k1, v1, segment_ids=SegmentIds(s1, s1)))(
        q, k, v, seg)


def _active_mesh() -> Any:
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh is None or mesh.empty or mesh.size == 1 else mesh


def splash_attention(q: Array, k: Array, v: Array, segment_ids: Array, scale: float,
                     *, interpret: bool | None = None) -> Array:
    """Splash attention within segments. q, k, v [B, L, H, Dh] -> [B, L, H, Dh] (q's dtype).

    q is scaled in float32 and rounded once to its dtype. Under an active mesh the kernel runs
    per shard: the batch over the mesh axes of 'activation_batch' and the heads over those of
    'activation_heads' (the logical rules in force), the sequence whole."""
    interpret = _interpret if interpret is None else interpret
    dt = q.dtype
    q = (q.astype(jnp.float32) * scale).astype(dt)
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))                   # [B, H, L, Dh]
    local = functools.partial(_splash_local, interpret=interpret)
    mesh = _active_mesh()
    if mesh is not None:
        import flax.linen as nn
        from jax.sharding import PartitionSpec as P
        batch_axes, head_axes = nn.logical_to_mesh_axes(("activation_batch", "activation_heads"))
        qkv = P(batch_axes, head_axes, None, None)
        local = jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, P(batch_axes, None)),
                              out_specs=qkv, check_vma=False)
    out = local(q, k, v, segment_ids)
    return jnp.swapaxes(out, 1, 2).astype(dt)
