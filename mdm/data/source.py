"""The grain data source over token shards: the batch of step s is a pure function of (seed, s).

Per row kind k (text / image / audio) with N_k rows in the train split and quota n_k rows per
batch (mdm.data.mixing), row j of step s reads

    p = s * n_k + j,   epoch e = p // N_k,   index = perm_{seed, k, e}[p mod N_k]

where perm_{seed,k,e} is a seeded permutation of [0, N_k): every row is seen once per epoch,
and the order is pure index arithmetic: a restart at step s, or a restart on another number of
processes (each reads only its slice of the global rows), sees exactly the same batches, with no
iterator state to checkpoint. `grain_dataset` exposes this as a grain MapDataset indexed by step
(random access), and `iterate` reads ahead with grain's prefetching threads.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Iterator

import grain
import numpy as np

from mdm.data.mixing import quotas
from mdm.data.shards import (ROW_KINDS, ShardError, check_compatible, load_manifest, open_split,
                             read_array)
from mdm.token_space import TokenSpace

FIELDS = ("tokens", "segment_ids", "cond")


class ShardSource:
    def __init__(self, path: str, space: TokenSpace, seq_len: int, mixture: dict[str, float],
                 seed: int = 0, verify: bool = True) -> None:
        self.path, self.space, self.seq_len, self.seed = path, space, seq_len, seed
        self.mixture = {k: float(v) for k, v in mixture.items()}
        self.manifest = load_manifest(path)
        check_compatible(self.manifest, space, seq_len, path)
        self.train = open_split(path, "train", verify)
        self.eval_split = (open_split(path, "eval", verify)
                           if "eval" in self.manifest["splits"] else None)
        for kind, r in self.mixture.items():
            if r > 0 and (kind not in self.train or self.train[kind]["rows"] == 0):
                raise ShardError(f"config.data.mixture.{kind} = {r} but {path} has no {kind} "
                                 f"rows (has {sorted(self.train)}); set "
                                 f"--config.data.mixture.{kind}=0 or tokenize {kind} data")

    @classmethod
    def from_config(cls, cfg: Any, space: TokenSpace) -> "ShardSource":
        return cls(cfg.data.path, space, cfg.data.seq_len, dict(cfg.data.mixture), cfg.data.seed)

    def describe(self) -> dict[str, Any]:
        return {"source": "shards", "path": self.path, "fingerprint": self.manifest["fingerprint"],
                "tokenizers": self.manifest.get("tokenizers", {}),
                "rows": {k: v["rows"] for k, v in self.train.items()}}

    @functools.lru_cache(maxsize=16)
    def _perm(self, kind: str, epoch: int) -> np.ndarray:
        kid = ROW_KINDS.index(kind)
        return np.random.default_rng([self.seed, kid, epoch]).permutation(self.train[kind]["rows"])

    def row_indices(self, kind: str, step: int, quota: int, rows: range) -> np.ndarray:
        """Indices into kind's train array for batch rows `rows` (0 <= j < quota) of `step`."""
        n = self.train[kind]["rows"]
        p = step * quota + np.asarray(list(rows), np.int64)
        epochs, offs = p // n, p % n
        return np.array([self._perm(kind, int(e))[o] for e, o in zip(epochs, offs)], np.int64)

    def _read(self, arrays: dict[str, Any], idx: np.ndarray) -> dict[str, np.ndarray]:
        if len(idx) == 0:
            return {f: np.zeros((0, self.seq_len), np.int32 if f != "cond" else bool) for f in FIELDS}
        order = np.argsort(idx)  # sorted reads are cheaper; restore the order afterwards
        out = {}
        for f in FIELDS:  # a truncated / corrupt chunk is a ShardError naming the file
            data = read_array(arrays[f][idx[order]], os.path.join(arrays["path"], f))
            res = np.empty_like(data)
            res[order] = data
            out[f] = res.astype(bool) if f == "cond" else res.astype(np.int32)
        return out

    def batch(self, step: int, batch_size: int, process_index: int = 0,
              process_count: int = 1) -> dict[str, np.ndarray]:
        """This process's rows of step's global batch (rows laid out text, image, audio)."""
        if batch_size % process_count:
            raise ValueError(f"global batch {batch_size} not divisible by {process_count} processes")
        q = quotas(batch_size, self.mixture)
        per = batch_size // process_count
        lo, hi = process_index * per, (process_index + 1) * per
        parts, start = [], 0
        for kind in ROW_KINDS:
            a, b = max(lo, start), min(hi, start + q[kind])
            if a < b:
                idx = self.row_indices(kind, step, q[kind], range(a - start, b - start))
                parts.append(self._read(self.train[kind], idx))
            start += q[kind]
        return {f: np.concatenate([p[f] for p in parts]) for f in FIELDS}

    def eval_examples(self, num_examples: int) -> dict[str, np.ndarray]:
        """The fixed eval set: the first rows of each kind of the eval split, `num_examples`
        split equally over the kinds the data set has (not the run's mixture), so every run on
        this data set, whatever its mixture, evaluates every modality on the same rows.
        Adds `kind` [n] (the row kind) and `row` [n] (the row's index in its eval array)."""
        if self.eval_split is None:
            raise ShardError(f"{self.path} has no eval split; tokenize with held-out data")
        kinds = [k for k in ROW_KINDS if self.eval_split.get(k, {}).get("rows", 0) > 0]
        q = quotas(num_examples, {k: 1.0 for k in kinds})
        parts = []
        for kind in kinds:
            n = self.eval_split[kind]["rows"]
            idx = np.arange(q[kind]) % n
            part = self._read(self.eval_split[kind], idx)
            part["kind"] = np.full(len(idx), kind)
            part["row"] = idx
            parts.append(part)
        return {f: np.concatenate([p[f] for p in parts]) for f in (*FIELDS, "kind", "row")}

    def grain_dataset(self, batch_size: int, process_index: int = 0,
                      process_count: int = 1, num_steps: int = 2 ** 40) -> grain.MapDataset:
        """grain MapDataset whose element s is this process's rows of step s."""
        return grain.MapDataset.range(0, num_steps).map(
            lambda s: self.batch(int(s), batch_size, process_index, process_count))

    def iterate(self, start: int, stop: int, batch_size: int, process_index: int = 0,
                process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        ds = self.grain_dataset(batch_size, process_index, process_count, stop)[start:stop]
        return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)))
