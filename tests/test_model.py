"""Model: logical annotations, measured parameter counts, FLOPs vs XLA's own count."""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.base import get_config
from mdm.flops import flops_per_token
from mdm.model import ModelConfig, Transformer, count_params, param_groups, segment_positions
from mdm.objective import Batch
from mdm.optim import lr_schedule, make_optimizer
from mdm.sharding import mesh_context, mesh_from_config, rules_from_config
from mdm.train_state import abstract_params, state_shardings
from mdm.train_step import make_train_step
from mdm.assemble import build


def _tiny(**kw) -> ModelConfig:
    return ModelConfig(vocab_size=128, width=64, depth=3, num_heads=4, **kw)


def test_every_parameter_has_logical_axis_names():
    boxed = abstract_params(Transformer(_tiny(qk_norm=True)), 16)
    leaves = jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    for x in leaves:
        assert len(x.names) == len(x.value.shape)
        assert all(n is not None for n in x.names)


@pytest.mark.parametrize("scan", [True, False])
def test_parameter_counts_equal_the_sum_over_the_initialised_tree(scan):
    cfg = _tiny(scan_layers=scan)
    params = nn.unbox(Transformer(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32),
                                            jnp.ones((1, 8), jnp.int32))["params"])
    total = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    c = count_params(params)
    assert c["params_total"] == total
    assert c["params_embedding"] == 128 * 64 and c["params_head"] == 64 * 128
    F = cfg.resolved_mlp_dim
    per_layer = 4 * 64 * 64 + 3 * 64 * F + 2 * 64
    assert c["params_non_embedding"] == 3 * per_layer + 64 + 64 * 128
    groups = set(jax.tree_util.tree_leaves(param_groups(params)))
    assert groups == {"embedding", "output", "norm", "hidden"}


def test_attention_stays_within_segments_and_pad_is_ignored():
    cfg = _tiny(scan_layers=False)
    model = Transformer(cfg)
    tok = jnp.array([[20, 21, 22, 23, 24, 25, 0, 0]])
    seg = jnp.array([[1, 1, 1, 2, 2, 2, 0, 0]])
    params = model.init(jax.random.PRNGKey(0), tok, seg)
    out = model.apply(params, tok, seg)
    # changing segment 2 (or the PAD) does not change segment 1's outputs
    tok2 = tok.at[0, 4].set(40).at[0, 7].set(50)
    out2 = model.apply(params, tok2, seg.at[0, 7].set(0))
    np.testing.assert_allclose(out[0, :3], out2[0, :3], atol=1e-5)
    assert not np.allclose(out[0, 3:6], out2[0, 3:6])
    np.testing.assert_array_equal(segment_positions(seg)[0], [0, 1, 2, 0, 1, 2, 0, 1])


def test_bf16_compute_keeps_float32_logits():
    cfg = _tiny(dtype="bfloat16")
    m = Transformer(cfg)
    tok, seg = jnp.zeros((1, 8), jnp.int32) + 20, jnp.ones((1, 8), jnp.int32)
    out = m.apply(m.init(jax.random.PRNGKey(0), tok, seg), tok, seg)
    assert out.dtype == jnp.float32


def test_completep_multipliers():
    base = _tiny(parameterization="completep", base_width=64, base_depth=3)
    wide = ModelConfig(vocab_size=128, width=256, depth=12, num_heads=4,
                       parameterization="completep", base_width=64, base_depth=3)
    assert base.width_mult == 1 and base.residual_scale == 1 and base.output_mult == 1
    assert wide.width_mult == 4 and wide.residual_scale == pytest.approx(1 / 4)
    assert wide.output_mult == pytest.approx(0.25)
    assert wide.hidden_init_std() == pytest.approx(0.02 / 2)


# CompleteP's per-group table (Dey et al. 2025), written out here independently of mdm.optim:
# (lr, wd, eps) multipliers for m_w = width / base_width, m_d = depth / base_depth, alpha.
def _completep_table(m_w: float, m_d: float, alpha: float) -> dict[str, tuple[float, float, float]]:
    return {"embedding": (1.0, 1.0, 1 / m_w),
            "norm": (1.0, 0.0, 1 / m_w),
            "output": (1.0, 1.0, 1 / m_w),
            "hidden": (m_d ** (alpha - 1) / m_w, m_w / m_d ** (alpha - 1), 1 / m_w / m_d ** alpha)}


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_completep_first_adam_step_follows_the_per_group_table(alpha):
    """One optimizer step from fresh state on gradients comparable to eps: Adam's first
    bias-corrected step is g / (|g| + eps), so each group's update reads back its own lr, wd and
    eps multiplier:  u = -lr lr_mult (g / (|g| + eps eps_mult) + wd wd_mult p)."""
    from mdm.model import param_group
    from mdm.optim import group_multipliers
    cfg = ModelConfig(vocab_size=64, width=128, depth=8, num_heads=4, parameterization="completep",
                      base_width=32, base_depth=2, depth_alpha=alpha)
    table = _completep_table(4.0, 4.0, alpha)
    got = group_multipliers(cfg)
    for g, (lr_m, wd_m, eps_m) in table.items():
        assert (got["lr"][g], got["wd"][g], got["eps"][g]) == pytest.approx((lr_m, wd_m, eps_m)), g

    params = jax.tree_util.tree_map(
        lambda x: jnp.full(x.shape, 0.5, jnp.float32),
        nn.unbox(abstract_params(Transformer(cfg), 8)))
    grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 1e-3, jnp.float32), params)
    lr, wd, eps = 1e-2, 0.1, 1e-3
    tx = make_optimizer(cfg, lambda step: lr, 0.9, 0.95, eps, wd, 0.0)
    updates, _ = tx.update(grads, tx.init(params), params)
    seen = set()
    for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
        g = param_group(tuple(getattr(k, "key", str(k)) for k in path))
        lr_m, wd_m, eps_m = table[g]
        want = -lr * lr_m * (1e-3 / (1e-3 + eps * eps_m) + wd * wd_m * 0.5)
        np.testing.assert_allclose(np.asarray(u), want, rtol=1e-4, err_msg=str(path))
        seen.add(g)
    assert seen == set(table)


def test_standard_parameterization_has_unit_multipliers():
    from mdm.optim import group_multipliers
    m = group_multipliers(_tiny())
    assert all(v == 1.0 for v in m["lr"].values()) and all(v == 1.0 for v in m["eps"].values())
    assert m["wd"] == {"embedding": 1.0, "hidden": 1.0, "output": 1.0, "norm": 0.0}


def test_attention_scale_rules():
    """sqrt: 1/sqrt(d_head); mup: sqrt(d_base)/d_head (1/d_head up to the base's constant);
    auto = mup under CompleteP, sqrt under standard."""
    wide = ModelConfig(vocab_size=64, width=256, depth=2, num_heads=4,
                       parameterization="completep", base_width=64, base_depth=2)
    assert wide.attention_scale == pytest.approx(math.sqrt(16) / 64)     # d_head 64, d_base 16
    assert ModelConfig(vocab_size=64, width=64, depth=2, num_heads=4, parameterization="completep",
                       base_width=64).attention_scale == pytest.approx(1 / 4)
    assert ModelConfig(vocab_size=64, width=256, num_heads=4).attention_scale == pytest.approx(1 / 8)
    assert ModelConfig(vocab_size=64, width=256, num_heads=4, attn_scale="mup",
                       base_head_dim=32).attention_scale == pytest.approx(math.sqrt(32) / 64)


def test_attention_uses_the_configured_scale():
    """mup with d_base = 4 d_head doubles the logits, which is the same as doubling W_q under
    sqrt (q enters the logits linearly; rotary is linear): the model must agree to fp noise."""
    mup = _tiny(attn_scale="mup", base_head_dim=64)      # d_head 16: scale 8/16 = 2/sqrt(16)
    sq = _tiny(attn_scale="sqrt")
    tok = jax.random.randint(jax.random.PRNGKey(3), (2, 8), 0, 128)
    seg = jnp.ones((2, 8), jnp.int32)
    params = Transformer(sq).init(jax.random.PRNGKey(0), tok, seg)
    doubled = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 2 if any(getattr(k, "key", None) == "query" for k in p) else x, params)
    a = Transformer(mup).apply(params, tok, seg)
    b = Transformer(sq).apply(doubled, tok, seg)
    c = Transformer(sq).apply(params, tok, seg)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-3


def _xla_train_flops_per_token(width: int, depth: int, heads: int, seq_len: int,
                               tokens_per_step: int = 2048) -> tuple[float, int, int]:
    """XLA's FLOP count of the compiled train step (forward, backward, Adam) per token, and
    (N_ne, d_attn) of that model. The batch is tokens_per_step / seq_len rows, so the per-step
    work that is not per token (the optimizer update) is the same per token at every seq_len.
    Layers are unrolled: XLA's cost analysis counts a scanned loop body only once."""
    c = get_config("tiny")
    c.model.update(width=width, depth=depth, num_heads=heads, scan_layers=False)
    c.data.seq_len = seq_len
    c.mesh.data = 1
    B = tokens_per_step // seq_len
    c.train.physical_batch = B
    b = build(c)
    mesh = mesh_from_config(c, jax.devices()[:1])
    rules = rules_from_config(c)
    lr = lr_schedule(1e-3, c.train.total_tokens, b.tokens_per_step, 0.05)
    tx = make_optimizer(b.model_cfg, lr, 0.9, 0.95, 1e-8, 0.0, 1.0)
    counts = count_params(abstract_params(b.model, seq_len))
    # the state as sharded shapes, as create_state would lay it out: lowering needs no values
    abstract, shardings = state_shardings(b.model, tx, mesh, rules, seq_len, ema=False)
    state = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    step = make_train_step(b.model, tx, b.space, b.objective, 1, lr, jax.random.PRNGKey(1))
    batch = Batch(jnp.full((B, seq_len), 20, jnp.int32), jnp.ones((B, seq_len), jnp.int32),
                  jnp.zeros((B, seq_len), bool))
    with mesh_context(mesh, rules):
        cost = jax.jit(step).lower(state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    mc = b.model_cfg
    return cost["flops"] / (B * seq_len), counts["params_non_embedding"], (
        mc.num_heads * mc.resolved_head_dim)


@pytest.mark.parametrize("width,depth,heads", [(128, 2, 4), (256, 2, 8)])
def test_flops_per_token_terms_match_xla_cost_analysis(width, depth, heads):
    """Each term of flops_per_token = 6 N + 12 l L d_attn against XLA's count, separately.

    XLA's per-token count of the train step at fixed width and depth is F(L) = a + s L: the
    attention term (QK^T and AV, and the softmax) is the only per-token work that grows with L
    (the optimizer's per-token share is fixed by holding the tokens per step at 2048). So two
    sequence lengths isolate the slope s = (F(L2) - F(L1)) / (L2 - L1), to compare with
    12 l d_attn, and the intercept a = F(L1) - s L1, to compare with 6 N.

    What XLA counts beyond the formula, so both ratios are >= 1 and close to it:
      * slope: every dot at 2 M N K exactly, plus the elementwise work on the l H L^2 scores
        (mask, max, exp, sum, divide, and their backward, ~15 per score per head), a relative
        excess ~15 H / (12 d_attn): ~4 % at d_attn / H = 32 (measured 1.039 and 1.038);
      * intercept: norms, activations, residuals, the vocabulary softmax and Adam, all
        O(width) per token against O(width^2) matmuls: ~1.5 % at width 128, ~1 % at 256.
    Bounds [0.99, 1.07] for the slope and [0.99, 1.04] for the intercept. A factor 2 on the
    attention term puts the slope ratio at ~0.52, a missing backward (x 1/3) at ~3.1.
    """
    L1, L2 = 64, 256
    f1, N, d_attn = _xla_train_flops_per_token(width, depth, heads, L1)
    f2, _, _ = _xla_train_flops_per_token(width, depth, heads, L2)
    fpt1, fpt2 = (flops_per_token(N, depth, L, d_attn) for L in (L1, L2))
    slope_formula = (fpt2 - fpt1) / (L2 - L1)              # the formula's terms, the same way
    param_formula = fpt1 - slope_formula * L1
    slope_xla = (f2 - f1) / (L2 - L1)
    intercept_xla = f1 - slope_xla * L1
    r_attn, r_param = slope_xla / slope_formula, intercept_xla / param_formula
    totals = [f1 / fpt1, f2 / fpt2]
    print(f"width {width} depth {depth} heads {heads}: attention (slope) ratio {r_attn:.4f}, "
          f"parameter (intercept) ratio {r_param:.4f}, totals {np.round(totals, 4)}")
    assert 0.99 < r_attn < 1.07, r_attn
    assert 0.99 < r_param < 1.04, r_param
    assert all(0.99 < t < 1.05 for t in totals), totals


def test_flops_formula_closed_form():
    assert flops_per_token(1000, 2, 64, 32) == 6 * 1000 + 12 * 2 * 64 * 32
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(1000, 2, 0, 32)


# --- attention implementations (mdm.attention) ----------------------------------------------
# float32 compute: every implementation computes the same sums in float32 and differs only in
# their order (blockwise online softmax for splash), so outputs agree to a few float32 ulps
# (measured <= 4e-7 on logits of size ~1) and parameter gradients to ~2e-7 of their largest
# entry (measured); 1e-5 leaves room. bfloat16 compute rounds q, k, v, the probabilities and
# each layer's output to 8 significant bits (2^-8 = 3.9e-3) at different points per
# implementation: measured 2.8e-3 (xla) and 4.8e-3 (splash) on logits of size ~1; 2e-2 bound.
ATTN_B, ATTN_L = 4, 128                  # splash tiles are multiples of 128 positions


def _attn_cfg(impl: str, **kw) -> ModelConfig:
    return ModelConfig(vocab_size=128, width=128, depth=2, num_heads=2, attention=impl, **kw)


def _segmented_batch() -> tuple[jax.Array, jax.Array]:
    """Several documents per row, and PAD tails (segment 0)."""
    tok = jax.random.randint(jax.random.PRNGKey(1), (ATTN_B, ATTN_L), 8, 128)
    seg = np.ones((ATTN_B, ATTN_L), np.int32)
    seg[0, 40:90], seg[0, 90:], seg[0, 120:] = 2, 3, 0
    seg[1, 100:] = 0
    seg[2, 64:] = 2
    return tok, jnp.asarray(seg)


def _apply(impl: str, params, tok, seg, **kw) -> np.ndarray:
    from mdm.attention import splash_interpret
    with splash_interpret():
        return np.asarray(jax.jit(lambda p: Transformer(_attn_cfg(impl, **kw)).apply(p, tok, seg))(
            params))


@pytest.mark.parametrize("impl", ["xla", "splash"])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_attention_implementations_agree_with_einsum(impl, dtype, tol):
    """Same logits at every real position, with several segments per row and PAD. PAD rows: xla
    matches einsum (a fully masked row is uniform over all keys in both); splash treats PAD as
    segment 0 (attends to PAD only), so its PAD rows differ, and nothing reads them
    (test_the_loss_never_reads_pad_outputs)."""
    tok, seg = _segmented_batch()
    params = Transformer(_attn_cfg("einsum")).init(jax.random.PRNGKey(0), tok, seg)
    ref = _apply("einsum", params, tok, seg, dtype=dtype)
    out = _apply(impl, params, tok, seg, dtype=dtype)
    real = np.asarray(seg) > 0
    np.testing.assert_allclose(out[real], ref[real], rtol=tol, atol=tol)
    if impl == "xla":
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


def test_the_loss_never_reads_pad_outputs_and_gradients_agree():
    """The ELBO of a real batch with PAD tails: its gradient w.r.t. the logits is exactly 0 at
    every PAD position, and its parameter gradients under xla and splash equal einsum's (float32,
    1e-5 of the largest gradient entry), although splash's PAD outputs differ from einsum's."""
    from mdm.attention import splash_interpret
    from mdm.objective import corrupt, elbo_sums, loss_from_sums
    c = get_config("tiny")
    c.data.seq_len = ATTN_L
    c.model.update(width=128, depth=2, num_heads=2, dtype="float32")
    c.objective.cond_dropout = 0.0
    b = build(c)
    raw = b.source.batch(0, 2)
    tokens, seg = np.array(raw["tokens"]), np.array(raw["segment_ids"])
    tokens[0, 100:], seg[0, 100:] = b.space.pad, 0                 # PAD tails
    tokens[1, 70:], seg[1, 70:] = b.space.pad, 0
    cond = np.array(raw["cond"]) & (seg > 0)
    batch = Batch(jnp.asarray(tokens), jnp.asarray(seg), jnp.asarray(cond))
    corr = corrupt(jax.random.PRNGKey(2), batch, jnp.full((2,), 0.6), b.space, b.objective)
    mcfg = b.model_cfg
    params = Transformer(mcfg).init(jax.random.PRNGKey(0), corr.inputs, batch.segment_ids)

    def loss_of_logits(logits):
        return loss_from_sums(elbo_sums(logits, batch, corr, b.space))[0]

    def loss(p, impl):
        model = Transformer(dataclasses.replace(mcfg, attention=impl))
        logits = model.apply(p, corr.inputs, batch.segment_ids)
        return loss_of_logits(logits), logits

    with splash_interpret():
        res = {impl: jax.jit(jax.grad(lambda p, i=impl: loss(p, i), has_aux=True))(params)
               for impl in ("einsum", "xla", "splash")}
    grads = {k: v[0] for k, v in res.items()}
    logits, splash_logits = res["einsum"][1], res["splash"][1]
    g_logits = np.asarray(jax.grad(loss_of_logits)(logits))
    pad = seg == 0
    assert pad.sum() >= 28 + 58 and np.all(g_logits[pad] == 0)
    assert np.abs(g_logits[~pad]).max() > 0
    assert np.abs(np.asarray(splash_logits - logits))[pad].max() > 1e-2   # PAD rows do differ
    ref = jax.tree_util.tree_leaves(grads["einsum"])
    scale = max(float(jnp.max(jnp.abs(g))) for g in ref)
    for impl in ("xla", "splash"):
        for got, want in zip(jax.tree_util.tree_leaves(grads[impl]), ref):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=impl)


def test_splash_runs_per_shard_under_a_mesh():
    """Under a (data 2, fsdp 2, tensor 2) mesh splash runs inside shard_map (batch over data x
    fsdp, heads over tensor) and still equals einsum at the real positions."""
    from mdm.attention import splash_interpret
    from mdm.sharding import DEFAULT_RULES, make_mesh
    tok, seg = _segmented_batch()
    params = Transformer(_attn_cfg("einsum")).init(jax.random.PRNGKey(0), tok, seg)
    ref = _apply("einsum", params, tok, seg)
    mesh = make_mesh((2, 2, 2), devices=jax.devices()[:8])
    f = jax.jit(lambda p: Transformer(_attn_cfg("splash")).apply(p, tok, seg))
    with mesh_context(mesh, DEFAULT_RULES), splash_interpret():
        assert "shard_map" in str(jax.make_jaxpr(f)(params))
        out = np.asarray(f(params))
    real = np.asarray(seg) > 0
    np.testing.assert_allclose(out[real], ref[real], rtol=1e-5, atol=1e-5)


def test_attention_choice_is_validated_and_resolved():
    from mdm.attention import AttentionError, resolve_attention
    from mdm.config_validation import ConfigError, validate_config
    c = get_config("tiny")
    c.model.attention = "flash"
    with pytest.raises(ConfigError) as e:
        validate_config(c)
    msg = str(e.value)
    assert "\n" not in msg and "config.model.attention" in msg
    assert all(v in msg for v in ("auto", "einsum", "xla", "cudnn", "splash"))
    c.model.update(attention="cudnn", dtype="float32")              # float32 compute
    with pytest.raises(ConfigError, match="bfloat16"):
        validate_config(c)

    bf16, f32 = _attn_cfg("auto", dtype="bfloat16"), _attn_cfg("auto")
    assert [resolve_attention(bf16, b) for b in ("cpu", "gpu", "tpu")] == ["einsum", "cudnn",
                                                                           "splash"]
    assert resolve_attention(f32, "gpu") == "xla"
    assert resolve_attention(_attn_cfg("xla"), "tpu") == "xla"
    tok, seg = _segmented_batch()
    for impl in ("cudnn", "splash"):                                 # not on this CPU backend
        model = Transformer(_attn_cfg(impl, dtype="bfloat16"))
        with pytest.raises(AttentionError) as e:
            model.init(jax.random.PRNGKey(0), tok, seg)
        assert "\n" not in str(e.value) and impl in str(e.value)
