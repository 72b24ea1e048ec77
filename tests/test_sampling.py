"""Sampler invariants and distributional correctness on a known case."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdm.model import ModelConfig, Transformer
from mdm.sampling import Prompt, SamplerConfig, sample, time_grid, truncate
from mdm.token_space import AUDIO, IMAGE, TEXT, TokenSpace, pair_sequence

SPACE = TokenSpace(text_vocab=12, image_vocab=9, audio_vocab=7, pad_vocab_to=8)


def t2i_prompt(B=4, n_img=9):
    row = pair_sequence("T2I", [1, 2, 3], [i % 9 for i in range(n_img)], 20, SPACE)
    tok = np.repeat(row.tokens, B, 0)
    seg = np.repeat(row.segment_ids, B, 0)
    cond = np.repeat(row.cond, B, 0)
    mod = SPACE.modality_of(tok)
    gen = mod == IMAGE                     # generate the image given the caption
    return Prompt(jnp.asarray(tok), jnp.asarray(seg), jnp.asarray(cond), jnp.asarray(mod)), jnp.asarray(gen)


@pytest.fixture(scope="module")
def model_fn():
    cfg = ModelConfig(vocab_size=SPACE.vocab_size, width=32, depth=1, num_heads=2)
    m = Transformer(cfg)
    tok = jnp.zeros((1, 20), jnp.int32)
    params = m.init(jax.random.PRNGKey(0), tok, jnp.ones_like(tok))
    return lambda x, s: m.apply(params, x, s)


@pytest.mark.parametrize("method", ["ancestral", "confidence", "margin", "entropy"])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_invariants(model_fn, method, guidance):
    prompt, gen = t2i_prompt()
    cfg = SamplerConfig(method=method, steps=6, guidance=guidance, top_k=5)
    f = jax.jit(lambda k: sample(model_fn, prompt, gen, SPACE, cfg, k, return_trajectory=True))
    x, traj = f(jax.random.PRNGKey(0))
    x, traj = np.asarray(x), np.asarray(traj)
    assert traj.shape == (7, 4, 20)
    assert not (x == SPACE.mask).any()                                  # nothing left masked
    np.testing.assert_array_equal(x[~np.asarray(gen)], np.asarray(prompt.tokens)[~np.asarray(gen)])
    lo, hi = SPACE.modality_range(IMAGE)
    assert ((x[np.asarray(gen)] >= lo) & (x[np.asarray(gen)] < hi)).all()
    for k in range(7):                                                  # revealed never change
        rev = traj[k] != SPACE.mask
        np.testing.assert_array_equal(traj[k][rev], x[rev])
    masked_counts = (traj == SPACE.mask).sum((1, 2))
    assert (np.diff(masked_counts) <= 0).all() and masked_counts[0] == 36
    x2 = np.asarray(f(jax.random.PRNGKey(0))[0])
    np.testing.assert_array_equal(x, x2)                                # same seed, same output
    assert not np.array_equal(x, np.asarray(f(jax.random.PRNGKey(1))[0]))


def test_ancestral_samples_follow_the_model_distribution():
    """A context-free model with known per-position distributions: the sample frequencies of
    the exact reverse process match them (chi-square), also after top-k truncation."""
    L, B = 6, 4000
    rng = np.random.default_rng(0)
    logits_text = rng.normal(0, 1.5, (L, 12)).astype(np.float32)
    full = np.full((L, SPACE.vocab_size), -5.0, np.float32)
    lo, hi = SPACE.modality_range(TEXT)
    full[:, lo:hi] = logits_text

    def fn(x, s):
        return jnp.broadcast_to(jnp.asarray(full), x.shape + (SPACE.vocab_size,))

    tok = jnp.full((B, L), SPACE.mask, jnp.int32)
    prompt = Prompt(tok, jnp.ones_like(tok), jnp.zeros(tok.shape, bool), jnp.full(tok.shape, TEXT))
    gen = jnp.ones(tok.shape, bool)
    for top_k in (0, 4):
        cfg = SamplerConfig(method="ancestral", steps=8, top_k=top_k)
        x = np.asarray(jax.jit(lambda k: sample(fn, prompt, gen, SPACE, cfg, k))(jax.random.PRNGKey(3)))
        p = np.exp(logits_text - logits_text.max(1, keepdims=True))
        if top_k:
            kth = np.sort(logits_text, 1)[:, -top_k][:, None]
            p = np.where(logits_text >= kth, p, 0)
        p /= p.sum(1, keepdims=True)
        for i in range(L):
            counts = np.bincount(x[:, i] - lo, minlength=12)
            exp = p[i] * B
            nz = exp > 0
            assert counts[~nz].sum() == 0
            chi2 = ((counts[nz] - exp[nz]) ** 2 / exp[nz]).sum()
            assert chi2 < 40, (i, chi2)     # 11 dof: p ~ 1e-4 threshold


def test_truncation_and_time_grids():
    logp = jax.nn.log_softmax(jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]])))
    p = np.exp(np.asarray(truncate(logp, 0, 0.7)))
    np.testing.assert_allclose(p, [[0.5 / 0.8, 0.3 / 0.8, 0, 0]], atol=1e-6)
    p = np.exp(np.asarray(truncate(logp, 3, 1.0)))
    np.testing.assert_allclose(p, [[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]], atol=1e-6)
    for kind in ("uniform", "cosine"):
        g = np.asarray(time_grid(8, kind))
        assert g[0] == 1 and abs(g[-1]) < 1e-6 and (np.diff(g) < 0).all()
    with pytest.raises(ValueError, match="method"):
        SamplerConfig(method="beam")
    with pytest.raises(ValueError, match="top_p"):
        SamplerConfig(top_p=0.0)


def test_guidance_moves_toward_the_conditional():
    """With a model whose conditional prediction is a point mass on one token and whose
    unconditional prediction is uniform, guidance w > 0 sharpens toward that token."""
    caption = SPACE.text_offset + 1

    def fn(x, s):
        B, L = x.shape
        out = jnp.zeros((B, L, SPACE.vocab_size))
        lo = SPACE.image_offset
        has_caption = (x[:, 1] == caption)[:, None]
        return out.at[:, :, lo + 4].set(jnp.where(has_caption, 2.0, 0.0))

    prompt, gen = t2i_prompt(B=2000)
    lo = SPACE.image_offset
    rates = []
    for w in (0.0, 3.0):
        cfg = SamplerConfig(method="ancestral", steps=4, guidance=w)
        x = np.asarray(jax.jit(lambda k: sample(fn, prompt, gen, SPACE, cfg, k))(jax.random.PRNGKey(0)))
        rates.append((x[np.asarray(gen)] == lo + 4).mean())
    p_cond = np.exp(2) / (np.exp(2) + 8)
    assert abs(rates[0] - p_cond) < 0.01
    # log p_c + w (log p_c - log p_u): the logit gap 2 becomes (1 + w) * 2
    p_guided = np.exp(2 * 4) / (np.exp(2 * 4) + 8)
    assert abs(rates[1] - p_guided) < 0.01
