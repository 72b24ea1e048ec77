"""Generation from a trained run: text, infilling, T2I, T2S, I2T (captioning) and S2T (ASR),
decoded to text / PNG / WAV, with the sampler settings saved next to the outputs under
<run>/samples/. The command line is `mdm-generate` (mdm/generate.py).

Python: `g = Generator(run_dir); images = g.t2i(["a small blue square at the top"], cfg)`.

Only the parameters are restored from the checkpoint (the EMA weights when the run kept them),
never the optimizer state, so sampling needs a third of the training state's memory.

The run's config.json names the token shards (data.path) whose manifest names the tokenizers
that decode the outputs. Media lengths (image tokens per image, audio frames per clip) are read
from the held-out shard rows. Caption / transcript lengths are given by the caller (default:
the length of the reference text when evaluating, an oracle stated in the metrics).
"""
from __future__ import annotations

import datetime
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from mdm import run_contract as rc
from mdm.samplers import Prompt, SamplerConfig, sample
from mdm.token_space import IMAGE, AUDIO, TEXT, Sequences, TokenSpace, concat, pair_sequence


class Generator:
    def __init__(self, run_dir: str, step: int | None = None) -> None:
        from mdm.assemble import build
        from mdm.checkpointing import Checkpointer
        from mdm.sharding import make_mesh, rules_from_config
        from mdm.train_state import param_shardings
        self.run_dir = run_dir
        with open(os.path.join(run_dir, rc.CONFIG_FILE)) as f:
            self.run_config = json.load(f)
        cfg = mlc.ConfigDict(self.run_config["config"])
        cfg.mesh.update(data=1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1, dcn_tensor=1)
        # The attention kernel belongs to the machine, not the model (same function): a run
        # trained with splash on TPU samples here with what this backend resolves to.
        cfg.model.attention = "auto"
        self.cfg = cfg
        self.built = build(cfg)
        self.space: TokenSpace = self.built.space
        mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
        abstract, shardings = param_shardings(self.built.model, mesh, rules_from_config(cfg),
                                              cfg.data.seq_len)
        ckpt = Checkpointer(os.path.join(run_dir, rc.CHECKPOINT_DIR))
        self.step = step if step is not None else ckpt.latest_step()
        if self.step is None:
            raise FileNotFoundError(f"{run_dir}: no checkpoint to sample from")
        item = "ema_params" if self.built.opt["ema_decay"] > 0 else "params"
        self.params = ckpt.restore_params(self.step, abstract, shardings, item)
        ckpt.close()
        self.model = self.built.model
        self.seq_len = cfg.data.seq_len
        self.tokenizers: dict[str, Any] = {}
        self.media_len = {"image": 0, "audio": 0}
        if cfg.data.source == "shards":
            from mdm.data.shards import load_manifest, open_split
            from mdm.tokenizers import load_tokenizer
            m = load_manifest(cfg.data.path)
            for k, d in m["tokenizers"].items():
                self.tokenizers[k] = load_tokenizer(d["path"])
            ev = open_split(cfg.data.path, "eval", verify=False)
            for kind, mid in (("image", IMAGE), ("audio", AUDIO)):
                if kind in ev:
                    row = ev[kind]["tokens"][0].read().result()
                    self.media_len[kind] = int((self.space.modality_of(row) == mid).sum())
        self._compiled: dict[Any, Any] = {}

    # --- core ------------------------------------------------------------------------
    def run(self, seqs: Sequences, gen: np.ndarray, target: np.ndarray, cfg: SamplerConfig,
            seed: int = 0) -> np.ndarray:
        """Sample the positions `gen` of laid-out rows; returns the completed token rows."""
        prompt = Prompt(jnp.asarray(seqs.tokens), jnp.asarray(seqs.segment_ids),
                        jnp.asarray(seqs.cond), jnp.asarray(target, jnp.int32))
        key = (seqs.tokens.shape, cfg)
        if key not in self._compiled:
            # the parameters are an argument, not constants folded into the program
            self._compiled[key] = jax.jit(lambda params, p, g, k: sample(
                lambda x, s: self.model.apply({"params": params}, x, s), p, g, self.space, cfg, k))
        out = self._compiled[key](self.params, prompt, jnp.asarray(gen), jax.random.PRNGKey(seed))
        return np.asarray(out)

    def _text_ids(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizers["text"].encode(text), np.int64)

    def _decode_text(self, row: np.ndarray, positions: np.ndarray) -> str:
        ids = self.space.to_local(row[positions], "text")
        return self.tokenizers["text"].decode(ids)

    # --- tasks -------------------------------------------------------------------------
    def text(self, num: int, length: int, cfg: SamplerConfig, prompt: str = "",
             seed: int = 0) -> list[str]:
        """Unconditional (or prompted) text of `length` generated tokens."""
        pre = self._text_ids(prompt) if prompt else np.zeros(0, np.int64)
        n = len(pre) + length
        if n > self.seq_len:
            raise ValueError(f"prompt + length = {n} tokens exceeds seq_len {self.seq_len}")
        tok = np.full((num, self.seq_len), self.space.pad, np.int32)
        tok[:, :len(pre)] = self.space.to_global(pre, "text")
        tok[:, len(pre):n] = self.space.text_offset           # placeholder, masked below
        seg = np.zeros_like(tok)
        seg[:, :n] = 1
        gen = np.zeros(tok.shape, bool)
        gen[:, len(pre):n] = True
        target = np.full(tok.shape, TEXT, np.int32)
        out = self.run(Sequences(tok, seg, np.zeros(tok.shape, bool)), gen, target, cfg, seed)
        return [self._decode_text(r, np.arange(n)) for r in out]

    def infill(self, prefix: str, n_missing: int, suffix: str, cfg: SamplerConfig,
               num: int = 1, seed: int = 0) -> list[str]:
        a, b = self._text_ids(prefix), self._text_ids(suffix)
        n = len(a) + n_missing + len(b)
        tok = np.full((num, self.seq_len), self.space.pad, np.int32)
        ids = np.concatenate([a, np.zeros(n_missing, np.int64), b])
        tok[:, :n] = self.space.to_global(ids, "text")
        seg = np.zeros_like(tok)
        seg[:, :n] = 1
        gen = np.zeros(tok.shape, bool)
        gen[:, len(a):len(a) + n_missing] = True
        out = self.run(Sequences(tok, seg, np.zeros(tok.shape, bool)), gen,
                       np.full(tok.shape, TEXT, np.int32), cfg, seed)
        return [self._decode_text(r, np.arange(n)) for r in out]

    def _pairs(self, task: str, texts: Sequence[np.ndarray], media: Sequence[np.ndarray]):
        seqs = concat([pair_sequence(task, t, m, self.seq_len, self.space)
                       for t, m in zip(texts, media)])
        target = self.space.modality_of(seqs.tokens)
        return seqs, target

    def _media(self, task: str, kind: str, mid: int, prompts: Sequence[str], cfg: SamplerConfig,
               seed: int) -> np.ndarray:
        n = self.media_len[kind]
        seqs, target = self._pairs(task, [self._text_ids(p) for p in prompts],
                                   [np.zeros(n, np.int64)] * len(prompts))
        gen = target == mid
        out = self.run(seqs, gen, target, cfg, seed)
        return np.stack([self.space.to_local(r[g], kind) for r, g in zip(out, gen)])

    def t2i(self, captions: Sequence[str], cfg: SamplerConfig, seed: int = 0) -> np.ndarray:
        """uint8 images [N, H, W, 3]."""
        return self.tokenizers["image"].decode(self._media("T2I", "image", IMAGE, captions, cfg, seed))

    def t2s(self, texts: Sequence[str], cfg: SamplerConfig, seed: int = 0) -> np.ndarray:
        """float32 waveforms [N, T]."""
        return self.tokenizers["audio"].decode(self._media("T2S", "audio", AUDIO, texts, cfg, seed))

    def _to_text(self, task: str, kind: str, codes: np.ndarray, lengths: Sequence[int],
                 cfg: SamplerConfig, seed: int) -> list[str]:
        seqs, target = self._pairs(task, [np.zeros(n, np.int64) for n in lengths], list(codes))
        gen = target == TEXT
        out = self.run(seqs, gen, target, cfg, seed)
        return [self._decode_text(r, np.flatnonzero(g)) for r, g in zip(out, gen)]

    def i2t(self, images: np.ndarray, lengths: Sequence[int], cfg: SamplerConfig,
            seed: int = 0) -> list[str]:
        """Captions of `lengths` text tokens for uint8 images [N, H, W, 3]."""
        return self._to_text("I2T", "image", self.tokenizers["image"].encode(images), lengths,
                             cfg, seed)

    def s2t(self, waves: np.ndarray, lengths: Sequence[int], cfg: SamplerConfig,
            seed: int = 0) -> list[str]:
        """Transcripts of `lengths` text tokens for float32 waveforms [N, T]."""
        return self._to_text("S2T", "audio", self.tokenizers["audio"].encode(waves), lengths,
                             cfg, seed)

    caption = i2t   # the names before the task vocabulary was unified
    asr = s2t

    # --- outputs ---------------------------------------------------------------------------
    def save(self, task: str, outputs: Any, prompts: Sequence[str], cfg: SamplerConfig,
             seed: int, metrics: dict[str, Any] | None = None, out_dir: str | None = None) -> str:
        """Write outputs (PNG / WAV / txt) with prompts, sampler settings and metrics."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        d = out_dir or os.path.join(self.run_dir, rc.SAMPLES_DIR, f"{task}-{stamp}")
        os.makedirs(d, exist_ok=True)
        files = []
        for i, o in enumerate(outputs):
            if task == "t2i":
                import matplotlib.image as mpimg
                p = os.path.join(d, f"{i:03d}.png")
                mpimg.imsave(p, np.asarray(o, np.uint8))
            elif task == "t2s":
                from scipy.io import wavfile
                p = os.path.join(d, f"{i:03d}.wav")
                sr = int(self.tokenizers["audio"].describe()["sample_rate"])
                wavfile.write(p, sr, (np.clip(o, -1, 1) * 32767).astype(np.int16))
            else:
                p = os.path.join(d, f"{i:03d}.txt")
                with open(p, "w", encoding="utf-8") as f:
                    f.write(o)
            files.append(os.path.basename(p))
        meta = {"task": task, "prompts": list(prompts), "files": files, "seed": seed,
                "checkpoint_step": self.step, "sampler": cfg.__dict__, "metrics": metrics or {}}
        with open(os.path.join(d, "samples.json"), "w") as f:
            json.dump(meta, f, indent=2)
        return d
