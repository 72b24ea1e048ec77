"""Optimizer: SDE reparameterization closed forms, token-based schedules, accumulation."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.base import get_config
from mdm.objective import Batch
from mdm.optim import lr_schedule, make_optimizer, sde_reparameterize
from mdm.sharding import mesh_context, mesh_from_config, rules_from_config
from mdm.train_state import create_state
from mdm.train_step import make_train_step
from mdm.assemble import build


@pytest.mark.parametrize("B,D", [(256, 1e9), (64, 1e9), (1024, 4e9), (32, 2.5e8)])
def test_sde_closed_form(B, D):
    r = sde_reparameterize(3e-3, 0.9, 0.95, 1e-8, B, D, ref_batch=256, ref_tokens=1e9, gamma=0.44)
    kappa = (1e9 / D) ** 0.44 * (B / 256)
    assert r.kappa == pytest.approx(kappa, rel=1e-12)
    assert r.lr == pytest.approx(3e-3 * math.sqrt(kappa), rel=1e-12)
    assert r.beta1 == pytest.approx(0.9 ** kappa, rel=1e-12)
    assert r.beta2 == pytest.approx(0.95 ** kappa, rel=1e-12)
    assert r.eps == pytest.approx(1e-8 / math.sqrt(kappa), rel=1e-12)


def test_sde_worked_example_and_identity():
    # B = 4 B_ref at the reference horizon: kappa = 4, lr x 2, beta2 = 0.95^4 = 0.81450625
    r = sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 1024, 1e9, 256, 1e9, 0.44)
    assert (r.kappa, r.lr, r.beta2, r.eps) == pytest.approx((4.0, 2e-3, 0.81450625, 5e-9))
    same = sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 256, 1e9, 256, 1e9, 0.44)
    assert (same.kappa, same.lr, same.beta1, same.beta2, same.eps) == (1.0, 1e-3, 0.9, 0.95, 1e-8)
    with pytest.raises(ValueError, match="batch must be > 0"):
        sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 0, 1e9, 256, 1e9, 0.44)


def test_resolved_sde_values_reach_the_build():
    c = get_config("tiny")
    c.sde.update(enabled=True, ref_batch=4, ref_tokens=c.train.total_tokens / 2)
    b = build(c)
    kappa = (0.5) ** 0.44 * (16 / 4)
    assert b.opt["kappa"] == pytest.approx(kappa)
    assert b.opt["lr"] == pytest.approx(c.optimizer.lr * math.sqrt(kappa))
    # B / kappa = B_ref (D / D_ref)^gamma, here 4 * 2^0.44 (not B_ref)
    assert b.logical_batch == pytest.approx(4 * 2 ** 0.44, rel=1e-12)
    assert b.logical_batch == pytest.approx(16 / kappa, rel=1e-12)


def test_sde_rules_hand_computed():
    # B = 32 against B_ref = 8, D = 1e6 against D_ref = 2e6, gamma = 0.5:
    # kappa = 2^0.5 * 4 = 5.656854..., sqrt(kappa) = 2.378414...
    kappa, root = 5.656854249492381, 2.378414230005442
    r = sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 32, 1e6, 8, 2e6, 0.5, weight_decay=0.1,
                           grad_clip=1.0, ema_decay=0.999)
    assert r.kappa == pytest.approx(kappa, rel=1e-12)
    assert r.lr == pytest.approx(1e-3 * root, rel=1e-12)
    assert r.eps == pytest.approx(1e-8 / root, rel=1e-12)
    assert r.beta1 == pytest.approx(0.5510063, rel=1e-6)          # 0.9^5.6568...
    assert r.weight_decay == pytest.approx(0.2378414230005442, rel=1e-12)  # lr wd per SDE time
    assert r.ema_decay == pytest.approx(0.9943563, rel=1e-6)      # 0.999^5.6568...
    assert r.grad_clip == 1.0
    assert r.logical_batch == pytest.approx(8 * 0.5 ** 0.5, rel=1e-12)   # B_ref (D/D_ref)^gamma
    # the decay per unit of SDE time is the reference's: lr' wd' = kappa lr wd
    assert r.lr * r.weight_decay == pytest.approx(kappa * 1e-3 * 0.1, rel=1e-12)
    alt = sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 32, 1e6, 8, 2e6, 0.5, weight_decay=0.1,
                             grad_clip=1.0, ema_decay=0.999, weight_decay_rule="fixed",
                             ema_rule="fixed", grad_clip_rule="noise_scaled")
    assert (alt.weight_decay, alt.ema_decay) == (0.1, 0.999)
    assert alt.grad_clip == pytest.approx(1.0 / root, rel=1e-12)
    off = sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 32, 1e6, 8, 2e6, 0.5, grad_clip=1.0,
                             grad_clip_rule="off")
    assert off.grad_clip == 0.0 and off.ema_decay == 0.0   # no EMA stays no EMA
    with pytest.raises(ValueError, match="ema_rule"):
        sde_reparameterize(1e-3, 0.9, 0.95, 1e-8, 32, 1e6, 8, 2e6, 0.5, ema_rule="sqrt")


def test_sde_rules_reach_the_build():
    c = get_config("tiny")
    c.optimizer.update(weight_decay=0.1, ema_decay=0.99)
    c.sde.update(enabled=True, ref_batch=4, ref_tokens=c.train.total_tokens)
    b = build(c)                                            # kappa = 16 / 4 = 4
    assert b.opt["kappa"] == pytest.approx(4.0)
    assert b.opt["weight_decay"] == pytest.approx(0.2)
    assert b.opt["ema_decay"] == pytest.approx(0.99 ** 4)
    assert b.opt["grad_clip"] == c.optimizer.grad_clip
    c.sde.weight_decay_rule = "bogus"
    from mdm.config_validation import ConfigError
    with pytest.raises(ConfigError, match="sde.weight_decay_rule"):
        build(c)


def test_schedule_is_defined_in_tokens():
    total = 1e6
    small = lr_schedule(1.0, total, tokens_per_step=1000, warmup=0.1, decay="cosine",
                        min_lr_ratio=0.1)
    big = lr_schedule(1.0, total, tokens_per_step=4000, warmup=0.1, decay="cosine",
                      min_lr_ratio=0.1)
    for tokens in (0, 4e4, 1e5, 5e5, 1e6):
        assert float(small(tokens / 1000)) == pytest.approx(float(big(tokens / 4000)), abs=1e-6)
    assert float(small(50)) == pytest.approx(0.5)                 # half-way through warmup
    assert float(small(1000)) == pytest.approx(0.1)               # ends at min_lr_ratio
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))         # cosine at p = 0.5
    assert float(small(550)) == pytest.approx(mid, rel=1e-5)
    wsd = lr_schedule(1.0, total, 1000, warmup=1e4, decay="wsd", decay_fraction=0.2,
                      min_lr_ratio=0.0)
    assert float(wsd(500)) == 1.0 and float(wsd(800)) == 1.0
    assert float(wsd(900)) == pytest.approx(0.5) and float(wsd(1000)) == pytest.approx(0.0)
    const = lr_schedule(2.0, total, 1000, warmup=0.0, decay="constant")
    assert float(const(0)) == 2.0 and float(const(999)) == 2.0


def _one_step(num_micro, ema_decay=0.0, grad_noise=False, eps=1e-8):
    c = get_config("tiny")
    c.mesh.data = 1
    # float32: these tests check the accumulation arithmetic; in bf16 a different micro-batch
    # split rounds the activations differently (tests/test_sharded_training covers bf16)
    c.model.dtype = "float32"
    b = build(c)
    mesh = mesh_from_config(c, jax.devices()[:1])
    rules = rules_from_config(c)
    lr = lr_schedule(1e-2, c.train.total_tokens, b.tokens_per_step, 0.0, "constant")
    tx = make_optimizer(b.model_cfg, lr, 0.9, 0.95, eps, 0.0, 0.0)
    data = b.source.batch(0, 16)
    batch = Batch(*(jnp.asarray(data[k]) for k in ("tokens", "segment_ids", "cond")))
    state, _ = create_state(b.model, tx, mesh, rules, 64, jax.random.PRNGKey(0),
                            ema=ema_decay > 0)
    step = make_train_step(b.model, tx, b.space, b.objective, num_micro, lr,
                           jax.random.PRNGKey(1), ema_decay, grad_noise)
    with mesh_context(mesh, rules):
        new, m = jax.jit(step)(state, batch)
    return b, state, new, m, batch


def test_gradient_accumulation_equals_one_big_batch():
    # Adam's first step is lr * g / (|g| + eps): with eps = 1e-8 it is ~lr * sign(g), and an
    # element with |g| ~ 1e-6 moves by a visible fraction of lr when float order changes g in its
    # last bits; eps = 1e-4 makes the step smooth in g, so the comparison tests the gradient
    out = {k: _one_step(k, eps=1e-4)[2:4] for k in (1, 4)}
    for a, b_ in zip(jax.tree_util.tree_leaves(out[1][0].params),
                     jax.tree_util.tree_leaves(out[4][0].params)):
        np.testing.assert_allclose(a, b_, rtol=2e-4, atol=1e-5)
    assert float(out[1][1]["loss"]) == pytest.approx(float(out[4][1]["loss"]), rel=1e-5)
    assert float(out[1][1]["grad_norm"]) == pytest.approx(float(out[4][1]["grad_norm"]), rel=1e-4)


def test_ema_of_weights():
    _, old, new, _, _ = _one_step(1, ema_decay=0.9)
    for e, p0, p1 in zip(*(jax.tree_util.tree_leaves(t) for t in
                           (new.ema_params, old.params, new.params))):
        np.testing.assert_allclose(e, 0.9 * np.asarray(p0) + 0.1 * np.asarray(p1), rtol=1e-5,
                                   atol=1e-7)


def _simulated_components(counts: list[int], draws: int, seed: int):
    """Per-unit gradients x = G + N(0, Sigma) in d = 8 dimensions with |G|^2 = 1 and
    tr Sigma = 16 (so B_noise = 16 units), Sigma diagonal and anisotropic; micro-batch j
    averages counts[j] units, the big batch all of them (the count-weighted mean of the
    micro-batch means). Returns (|G|^2, tr S) estimates of `draws` independent batches."""
    from mdm.train_step import noise_scale_components
    rng = np.random.default_rng(seed)
    d = 8
    G = np.full(d, 1 / np.sqrt(d))
    var = np.linspace(0.5, 3.5, d)                     # sum = 16
    c = np.asarray(counts, float)
    # the mean of c_j iid N(G, Sigma) units is exactly N(G, Sigma / c_j)
    g = G + rng.standard_normal((draws, len(c), d)) * np.sqrt(var / c[:, None])
    big = (c[:, None] * g).sum(1) / c.sum()
    g2, tr = jax.jit(jax.vmap(noise_scale_components, in_axes=(0, None, 0)))(
        jnp.asarray((g ** 2).sum(-1), jnp.float32), jnp.asarray(c, jnp.float32),
        jnp.asarray((big ** 2).sum(-1), jnp.float32))
    return np.asarray(g2, np.float64), np.asarray(tr, np.float64), float(G @ G), float(var.sum())


@pytest.mark.parametrize("seed,counts", [(0, [16, 16, 16, 16]), (1, [4, 8, 16, 36]),
                                        (2, [1, 2, 3, 50, 200])])
def test_gradient_noise_components_are_unbiased_on_known_gradients(seed, counts):
    """McCandlish et al. (2018, App. A) small/big-batch estimators on synthetic gradients with
    known |G|^2 = 1 and tr S = 16: the means over 40 000 independent batches are within 5
    standard errors (sample SD / sqrt(draws)) of the truth. With unequal micro-batch counts
    only 1 / B_small = mean_j (1 / c_j) is unbiased: the arithmetic mean count (C / k, the old
    code) makes tr S come out ~2x too large for [4, 8, 16, 36] (> 100 SE). The per-batch
    ratio tr S / |G|^2 is no estimate of B_noise (a ratio of noisy estimates is biased; see
    tests/analysis/test_gradient_noise_scale.py)."""
    n = 40_000
    g2, tr, g2_true, tr_true = _simulated_components(counts, n, seed)
    z_g2 = (g2.mean() - g2_true) / (g2.std(ddof=1) / np.sqrt(n))
    z_tr = (tr.mean() - tr_true) / (tr.std(ddof=1) / np.sqrt(n))
    print(f"counts {counts}: mean |G|^2 {g2.mean():.4f} (z {z_g2:+.2f}), mean tr S "
          f"{tr.mean():.3f} (z {z_tr:+.2f}); ratio of means {tr.mean() / g2.mean():.2f} "
          f"(truth {tr_true / g2_true:.0f}); |G|^2 <= 0 in {np.mean(g2 <= 0):.0%} of batches")
    assert abs(z_g2) < 5 and abs(z_tr) < 5, (z_g2, z_tr)


def test_gradient_noise_scale_of_the_train_step_uses_its_micro_batch_gradients():
    """Plumbing: the logged components are noise_scale_components of the squared norms of the
    micro-batch mean gradients, taken here one micro-batch at a time, and of the applied
    (full-batch) gradient. The formula itself is tested above on known gradients.

    Tolerance: the gradients of the scanned and the one-by-one programs agree to ~1e-6
    relative (float32), so each squared norm is trusted to 1e-4 relative; tr S divides a
    difference of such norms by (1 / B_small - 1 / B_big), so its error bound is
    1e-4 (|g_small|^2 + |g_big|^2) / (1 / B_small - 1 / B_big), and likewise for |G|^2."""
    from mdm.objective import corrupt, elbo_sums, sample_times
    from mdm.train_step import _micro, noise_scale_components
    k = 4
    b, state, _, m, batch = _one_step(k, grad_noise=True)
    rng = jax.random.fold_in(jax.random.PRNGKey(1), 0)
    k_t, k_c = jax.random.split(rng)
    t = sample_times(k_t, 16, b.objective.antithetic, b.objective.t_min)
    corr = corrupt(k_c, batch, t, b.space, b.objective)

    @jax.jit
    def grad_of(bt, cr):
        def f(p):
            logits = b.model.apply({"params": p}, cr.inputs, bt.segment_ids)
            return elbo_sums(logits, bt, cr, b.space).sums.sum()
        return jax.grad(f)(state.params)

    def sq(tree):
        return float(sum(np.sum(np.square(np.asarray(x, np.float64)))
                         for x in jax.tree_util.tree_leaves(tree)))

    total = float(corr.counted.sum())
    big_sq = sq(grad_of(batch, corr)) / total ** 2
    mb = jax.tree_util.tree_map(lambda x: _micro(x, k), (batch, corr))
    small, counts = [], []
    for j in range(k):
        bj, cj = jax.tree_util.tree_map(lambda x: x[j], mb)
        counts.append(float(cj.counted.sum()))
        small.append(sq(grad_of(bj, cj)) / counts[-1] ** 2)
    with jax.enable_x64(True):
        g2, tr = (float(v) for v in noise_scale_components(
            jnp.asarray(small, jnp.float64), jnp.asarray(counts, jnp.float64),
            jnp.asarray(big_sq, jnp.float64)))
    inv_small, inv_big = np.mean(1 / np.asarray(counts)), 1 / total
    scale = 1e-4 * (np.mean(small) + big_sq)
    assert abs(float(m["gns_trace"]) - tr) <= scale / (inv_small - inv_big)
    assert abs(float(m["gns_grad_sq"]) - g2) <= scale * (total + 1 / inv_small) / (
        total - 1 / inv_small)
