"""Score generation tasks (mdm.generation_tasks) on the embedded demo data set's held-out split.

  t2i      held-out captions -> images; the demo image checker reads digit / shape, colour,
           position, size back: accuracy per attribute
  t2s      held-out transcripts -> speech; mel-cepstral distortion (DTW) against the reference
           rendering of the same record, absolute speech-duration error, and the demo audio
           checker's word accuracy on the generated speech
  i2t      held-out images -> captions of the reference's length in tokens (a length oracle):
           exact match and character error rate
  s2t      held-out speech -> transcripts (length oracle as above): exact match and CER
  text     unconditional samples of `text_len` tokens: unigram / bigram JS divergence against
           the held-out text, repetition rate
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mdm.gen_metrics import cer, mcd_dtw, speech_duration, text_statistics
from mdm.generation_tasks import TASKS, task_name
from mdm.samplers import SamplerConfig


def _sel(n_total: int, n: int) -> np.ndarray:
    return np.arange(min(n, n_total))


def evaluate_task(gen: Any, demo: Any, task: str, cfg: SamplerConfig, num: int = 16,
                  seed: int = 0, text_len: int = 48) -> tuple[dict[str, float], Any, list[str]]:
    """(metrics, outputs, prompts) for one task on the first `num` held-out items."""
    task = task_name(task)
    if task in ("t2i", "i2t"):
        images, recs = demo.image_text("valid")
        # alternate digits and shapes so both attribute families are scored
        dig = [i for i, r in enumerate(recs) if r["source"] == "digit"]
        shp = [i for i, r in enumerate(recs) if r["source"] == "shape"]
        order = [x for pair in zip(dig, shp) for x in pair][:num]
        images, recs = images[order], [recs[i] for i in order]
        captions = [r["caption"] for r in recs]
        if task == "t2i":
            out = gen.t2i(captions, cfg, seed)
            m = demo.image_checker().check(out, recs)
            return m, out, captions
        lengths = [len(gen.tokenizers["text"].encode(c)) for c in captions]
        out = gen.i2t(images, lengths, cfg, seed)
        return _text_match(out, captions), out, captions
    if task in ("t2s", "s2t"):
        waves, recs = demo.audio_text("valid")
        idx = _sel(len(recs), num)
        waves, recs = waves[idx], [recs[i] for i in idx]
        texts = [r["text"] for r in recs]
        if task == "t2s":
            out = gen.t2s(texts, cfg, seed)
            sr = demo.sample_rate
            n = min(len(out), len(waves))
            mcd = [mcd_dtw(out[i][: waves.shape[1]], waves[i], sr) for i in range(n)]
            dur = [abs(speech_duration(out[i], sr) - speech_duration(waves[i], sr)) for i in range(n)]
            labels = np.asarray([r["label"] for r in recs])
            acc = demo.audio_checker().accuracy(out[:, : waves.shape[1]], labels)
            return {"mcd_db": float(np.mean(mcd)), "duration_error_s": float(np.mean(dur)),
                    "word_accuracy": float(acc)}, out, texts
        lengths = [len(gen.tokenizers["text"].encode(t)) for t in texts]
        out = gen.s2t(waves, lengths, cfg, seed)
        return _text_match(out, texts), out, texts
    if task == "text":
        out = gen.text(num, text_len, cfg, seed=seed)
        tok = gen.tokenizers["text"]
        held = [tok.encode(d) for d in demo.text("valid")] or [tok.encode(d) for d in demo.text("train")[:50]]
        return text_statistics([tok.encode(o) for o in out], held), out, []
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _text_match(hyp: list[str], ref: list[str]) -> dict[str, float]:
    return {"exact_match": float(np.mean([h.strip() == r.strip() for h, r in zip(hyp, ref)])),
            "cer": float(np.mean([cer(h.strip(), r.strip()) for h, r in zip(hyp, ref)]))}
