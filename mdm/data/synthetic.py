"""A structured synthetic tri-modal source with a known entropy, for tests and benchmarks.

Each modality m has a sparse Markov chain over K_m states (the first K_m ids of its range): every
state has `branching` successors with Dirichlet(1) probabilities, drawn once from the synthetic
seed. Its entropy rate, in nats per token, is

    H_m = sum_s pi(s) * H(P[s, :])        pi the stationary distribution of P,

which a perfect model approaches (the first token of a chain adds log K once per document).

Rows follow the layouts of mdm.token_space:
  text   packed documents (lengths uniform in [L/4, L]) separated by EOS;
  image  T2I or I2T (equal odds): a caption_len-token caption from the text chain and an image
         chain that fills the row, whose first state is caption[0] mod K_image (a real
         text -> image dependency);
  audio  the same with T2S / S2T and the audio chain.

The rows of step s are a pure function of (data seed, s, row index): any process count and any
restart see the same batch (mixing quotas from mdm.data.mixing).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mdm.data.mixing import MODALITIES, quotas
from mdm.token_space import Sequences, TokenSpace, concat, pack_text, pair_sequence


@dataclasses.dataclass
class MarkovChain:
    successors: np.ndarray  # int [K, b]
    cum_probs: np.ndarray   # f64 [K, b] cumulative transition probabilities

    @classmethod
    def random(cls, rng: np.random.Generator, states: int, branching: int) -> "MarkovChain":
        b = min(branching, states)
        succ = np.stack([rng.choice(states, size=b, replace=False) for _ in range(states)])
        probs = rng.dirichlet(np.ones(b), size=states)
        return cls(succ, np.cumsum(probs, axis=1))

    @property
    def states(self) -> int:
        return self.successors.shape[0]

    def transition_matrix(self) -> np.ndarray:
        K = self.states
        P = np.zeros((K, K))
        probs = np.diff(np.concatenate([np.zeros((K, 1)), self.cum_probs], axis=1), axis=1)
        for s in range(K):
            P[s, self.successors[s]] += probs[s]
        return P

    def entropy_rate(self) -> float:
        """sum_s pi(s) H(P[s]) in nats, pi the stationary distribution."""
        P = self.transition_matrix()
        w, v = np.linalg.eig(P.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1.0))])
        pi = pi / pi.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
        return float(pi @ h)

    def sample(self, rng: np.random.Generator, n: int, start: int | None = None) -> np.ndarray:
        out = np.empty(n, np.int64)
        s = int(rng.integers(self.states)) if start is None else int(start) % self.states
        u = rng.random(n)
        for i in range(n):
            out[i] = s
            j = int(np.searchsorted(self.cum_probs[s], u[i] * self.cum_probs[s, -1]))
            s = int(self.successors[s, min(j, self.successors.shape[1] - 1)])
        return out


class SyntheticSource:
    """Deterministic synthetic tri-modal batches; see the module docstring."""

    def __init__(self, space: TokenSpace, seq_len: int, mixture: dict[str, float],
                 data_seed: int = 0, states: int = 32, branching: int = 4,
                 chain_seed: int = 1234, caption_len: int = 8) -> None:
        self.space, self.seq_len, self.mixture = space, seq_len, dict(mixture)
        self.data_seed, self.caption_len = data_seed, caption_len
        if seq_len < caption_len + 8:
            raise ValueError(f"seq_len {seq_len} too short for caption_len {caption_len}")
        rng = np.random.default_rng(chain_seed)
        self.chains = {
            "text": MarkovChain.random(rng, min(states, space.text_vocab), branching),
            "image": MarkovChain.random(rng, min(states, space.image_vocab), branching),
            "audio": MarkovChain.random(rng, min(states, space.audio_vocab), branching),
        }

    @classmethod
    def from_config(cls, cfg: Any, space: TokenSpace) -> "SyntheticSource":
        d = cfg.data
        return cls(space, d.seq_len, dict(d.mixture), data_seed=d.seed,
                   states=d.synthetic.states, branching=d.synthetic.branching,
                   chain_seed=d.synthetic.seed, caption_len=d.synthetic.caption_len)

    def describe(self) -> dict[str, Any]:
        return {"source": "synthetic",
                "entropy_rate_nats": {m: c.entropy_rate() for m, c in self.chains.items()},
                "states": {m: c.states for m, c in self.chains.items()}}

    # --- rows ---------------------------------------------------------------------------
    def _text_row(self, rng: np.random.Generator) -> Sequences:
        L = self.seq_len
        docs, total = [], 0
        while total < L:
            n = int(rng.integers(L // 4, L + 1))
            docs.append(self.chains["text"].sample(rng, n))
            total += n + 1
        packed = pack_text(docs, L, self.space)
        return Sequences(packed.tokens[:1], packed.segment_ids[:1], packed.cond[:1])

    def _pair_row(self, rng: np.random.Generator, media: str) -> Sequences:
        caption = self.chains["text"].sample(rng, self.caption_len)
        n_media = self.seq_len - self.caption_len - 4
        med = self.chains[media].sample(rng, n_media, start=int(caption[0]))
        generate = rng.random() < 0.5
        task = {("image", True): "T2I", ("image", False): "I2T",
                ("audio", True): "T2S", ("audio", False): "S2T"}[(media, generate)]
        return pair_sequence(task, caption, med, self.seq_len, self.space)

    def _row(self, key: list[int], modality: str) -> Sequences:
        rng = np.random.default_rng(key)
        return self._text_row(rng) if modality == "text" else self._pair_row(rng, modality)

    def _rows(self, keys: list[list[int]], modalities: list[str]) -> dict[str, np.ndarray]:
        s = concat([self._row(k, m) for k, m in zip(keys, modalities)])
        return {"tokens": s.tokens, "segment_ids": s.segment_ids, "cond": s.cond}

    def batch(self, step: int, batch_size: int, process_index: int = 0,
              process_count: int = 1) -> dict[str, np.ndarray]:
        """This process's rows of the global batch of `step` (rows laid out text/image/audio)."""
        if batch_size % process_count:
            raise ValueError(f"global batch {batch_size} not divisible by {process_count} processes")
        q = quotas(batch_size, self.mixture)
        mods = [m for m in MODALITIES for _ in range(q[m])]
        per = batch_size // process_count
        rows = range(process_index * per, (process_index + 1) * per)
        return self._rows([[self.data_seed, 0, step, r] for r in rows], [mods[r] for r in rows])

    def eval_examples(self, num_examples: int) -> dict[str, np.ndarray]:
        """A fixed held-out set (its own random stream), identical across runs whatever their
        mixture: `num_examples` split equally over text, image and audio rows; row j of kind m
        is drawn from the key (data seed, 1, m, j). Adds `kind` [n] and `row` [n]."""
        q = quotas(num_examples, {m: 1.0 for m in MODALITIES})
        keys, mods = [], []
        for kid, m in enumerate(MODALITIES):
            keys += [[self.data_seed, 1, kid, j] for j in range(q[m])]
            mods += [m] * q[m]
        out = self._rows(keys, mods)
        out["kind"] = np.array(mods)
        out["row"] = np.concatenate([np.arange(q[m]) for m in MODALITIES])
        return out

    def iterate(self, start: int, stop: int, batch_size: int, process_index: int = 0,
                process_count: int = 1):
        for step in range(start, stop):
            yield self.batch(step, batch_size, process_index, process_count)
