"""Shared machinery of the learned tokenizers (image, audio): a Flax autoencoder with an FSQ
bottleneck, its parameters saved with orbax, batched jitted encode / decode, and a tokenizer_id
computed from the weights themselves.

On disk (besides `mdm_tokenizer.json`, which holds the architecture config):

    <dir>/params/        orbax StandardCheckpointer tree of the Flax parameters
    <dir>/train_log.json training settings, loss history, wall time and held-out metrics
                         (informational; not part of the tokenizer_id)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mdm.tokenizers.base import Tokenizer, TokenizerError, hash_arrays
from mdm.tokenizers.fsq import FSQ

PARAMS_DIR = "params"
TRAIN_LOG = "train_log.json"


class ConfigBase:
    """Mixin for frozen config dataclasses: JSON round trip with tuples restored and unknown
    keys rejected (a config from a newer / different tokenizer fails loudly)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise TokenizerError(f"{cls.__name__}: unknown config keys {unknown}")
        hints = typing.get_type_hints(cls)
        kw = {k: tuple(v) if "tuple" in str(hints[k]) and isinstance(v, list) else v
              for k, v in d.items()}
        return cls(**kw)


class LearnedTokenizer(Tokenizer):
    """Base for FSQ-autoencoder tokenizers. Subclasses define `config_cls`, `build_module`,
    `_example_input` (for shape inference) and the modality-specific encode / decode."""

    config_cls: ClassVar[type]
    encode_batch_size: ClassVar[int] = 64

    def __init__(self, cfg: Any, params: Any, train_log: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.module = self.build_module(cfg)
        self.fsq = FSQ(tuple(cfg.levels))
        self.params = params
        self.train_log: dict[str, Any] = dict(train_log or {})
        self._encode_fn = jax.jit(lambda p, x: self.module.apply(p, x, method="encode"))
        self._decode_fn = jax.jit(lambda p, z: self.module.apply(p, z, method="decode"))

    # --- to implement -----------------------------------------------------------------
    @classmethod
    def build_module(cls, cfg: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def _example_input(cls, cfg: Any) -> jax.ShapeDtypeStruct:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.fsq.codebook_size

    @classmethod
    def init_params(cls, cfg: Any, seed: int = 0) -> Any:
        module = cls.build_module(cfg)
        x = cls._example_input(cfg)
        return module.init(jax.random.key(seed), jnp.zeros(x.shape, x.dtype))

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def _fingerprint(self, h: "hashlib._Hash") -> None:
        leaves = jax.tree_util.tree_flatten_with_path(self.params)[0]
        named = sorted((jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in leaves)
        hash_arrays(h, named)

    def _save_files(self, directory: Path) -> None:
        import orbax.checkpoint as ocp
        ckpt = ocp.StandardCheckpointer()
        ckpt.save(directory / PARAMS_DIR, self.params, force=True)
        ckpt.wait_until_finished()
        ckpt.close()
        (directory / TRAIN_LOG).write_text(json.dumps(self.train_log, indent=2) + "\n")

    @classmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> "LearnedTokenizer":
        import orbax.checkpoint as ocp
        cfg = cls.config_cls.from_dict(config)
        pdir = directory / PARAMS_DIR
        if not pdir.is_dir():
            raise TokenizerError(f"{directory}: weights directory {PARAMS_DIR}/ is missing")
        module = cls.build_module(cfg)
        x = cls._example_input(cfg)
        device = jax.local_devices()[0]
        sharding = jax.sharding.SingleDeviceSharding(device)
        abstract = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
            jax.eval_shape(module.init, jax.random.key(0), x))
        ckpt = ocp.StandardCheckpointer()
        try:
            _check_saved_shapes(ckpt, pdir, abstract)
            params = ckpt.restore(pdir, abstract)
        finally:
            ckpt.close()
        log_file = directory / TRAIN_LOG
        log = json.loads(log_file.read_text()) if log_file.is_file() else {}
        return cls(cfg, params, log)

    def _batched(self, fn: Callable, params: Any, x: np.ndarray, out_dtype: Any) -> np.ndarray:
        """Apply fn(params, x[i:i+B]) over the leading axis, B = encode_batch_size. Every chunk
        is padded to B rows (repeating the last row) so that one shape is compiled per input
        length, whatever N is."""
        n, bs = x.shape[0], self.encode_batch_size
        if n == 0:
            raise TokenizerError("empty batch")
        outs = []
        for i in range(0, n, bs):
            chunk = x[i:i + bs]
            m = chunk.shape[0]
            if m < bs:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - m, axis=0)])
            outs.append(np.asarray(fn(params, jnp.asarray(chunk)))[:m].astype(out_dtype))
        return np.concatenate(outs, axis=0)

    def encode_latents(self, x: np.ndarray) -> np.ndarray:
        """Model-input batch -> int32 code indices (modality-specific shapes)."""
        return self._batched(self._encode_fn, self.params, x, np.int32)

    def decode_latents(self, codes: np.ndarray) -> np.ndarray:
        """int code indices -> float32 model-output batch."""
        codes = np.asarray(codes)
        if codes.size and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise TokenizerError(f"{self.kind} token ids must lie in [0, {self.vocab_size}); got "
                                 f"range [{codes.min()}, {codes.max()}]")
        return self._batched(self._decode_fn, self.params, codes.astype(np.int32), np.float32)

    def num_params(self) -> int:
        return int(sum(np.size(p) for p in jax.tree.leaves(self.params)))


def _check_saved_shapes(ckpt: Any, pdir: Path, abstract: Any) -> None:
    """Compare the checkpoint's array metadata with the tree the config builds; a mismatch
    (weights from another architecture, or an edited config) is reported by parameter path."""
    def table(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
        return {jax.tree_util.keystr(p): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
                for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
    meta = ckpt.metadata(pdir)
    saved = table(getattr(meta, "item_metadata", meta))
    want = table(abstract)
    if saved != want:
        diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
        rows = [f"{k}: saved {saved.get(k)}, config {want.get(k)}" for k in diff[:4]]
        raise TokenizerError(f"{pdir}: weights do not match the saved config "
                             f"({len(diff)} parameters differ; " + "; ".join(rows) + ")")
