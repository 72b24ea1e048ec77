"""Score generation tasks (mdm.generation_tasks) on the embedded demo data set's held-out split,
per prompt, with 95% intervals.

  t2i      held-out captions -> images; the demo image checker reads digit / shape, colour,
           position, size back: accuracy per attribute (digits and shape prompts alternate, so
           `num` prompts give num / 2 of each family)
  t2s      held-out transcripts (the spoken words in turn) -> speech; mel-cepstral distortion (DTW) against the reference
           rendering of the same record, absolute speech-duration error, and the demo audio
           checker's word accuracy on the generated speech
  i2t      held-out images -> captions: exact match and character error rate. The caption's
           length in tokens is given to the sampler (masked diffusion fills a fixed canvas):
           `lengths="oracle"` uses the reference's length, `lengths="prior"` the training
           split's most common length for that task (no oracle; kept as `prior_length`)
  s2t      held-out speech -> transcripts, scored and lengthed as i2t
  text     unconditional samples of `text_len` tokens: unigram / bigram JS divergence against
           the held-out text, repetition rate

`score_task` returns a TaskScore: the metrics, each metric's 95% interval over prompts (Wilson
for 0/1 outcomes such as accuracies and exact match; the percentile bootstrap of the mean for
CER, MCD and duration error; for the text statistics, which are corpus-level, the bootstrap over
generated samples: the value -/+ 1.96 bootstrap s.d.) and the per-prompt values (so two settings can be compared prompt by
prompt). `evaluate_task` is the flat form: metrics with `<metric>_lo` / `<metric>_hi`.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from mdm.gen_metrics import (cer, mcd_dtw, mean_interval, speech_duration, text_statistics,
                             text_statistics_interval)
from mdm.generation_tasks import TASKS, task_name
from mdm.samplers import SamplerConfig

LENGTHS = ("oracle", "prior")
BINARY = {"digit", "shape", "colour", "position", "size", "shape_all", "word_accuracy",
          "exact_match"}


@dataclasses.dataclass
class TaskScore:
    metrics: dict[str, float]                   # point estimates, counts as num_*
    intervals: dict[str, tuple[float, float]]   # 95%, per metric
    items: dict[str, list[float]]               # per prompt; NaN where a metric does not apply
    outputs: Any
    prompts: list[str]

    def flat(self) -> dict[str, float]:
        """metrics plus `<metric>_lo` / `<metric>_hi` (what summary.json keeps)."""
        out = dict(self.metrics)
        for k, (lo, hi) in self.intervals.items():
            out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
        return out


def _sel(n_total: int, n: int, offset: int = 0) -> np.ndarray:
    return np.arange(min(offset, n_total), min(offset + n, n_total))


def _round_robin(keys: list[Any]) -> list[int]:
    """Indices ordered one per key in turn (first of each key, then second of each, ...)."""
    groups: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out, lists = [], list(groups.values())
    for j in range(max((len(g) for g in lists), default=0)):
        out += [g[j] for g in lists if j < len(g)]
    return out


def _from_items(items: dict[str, np.ndarray], seed: int) -> tuple[dict, dict, dict]:
    metrics, intervals = {}, {}
    for k, v in items.items():
        v = np.asarray(v, np.float64)
        ok = np.isfinite(v)
        metrics[k] = float(v[ok].mean()) if ok.any() else float("nan")
        intervals[k] = mean_interval(v, binary=k in BINARY, seed=seed)
    return metrics, intervals, {k: [float(x) for x in v] for k, v in items.items()}


def prior_length(tokenizer: Any, texts: list[str]) -> int:
    """The most common token length of `texts` (the training split's captions / transcripts):
    the no-oracle length given to the sampler."""
    lens = collections.Counter(len(tokenizer.encode(t)) for t in texts)
    return max(1, lens.most_common(1)[0][0])


def score_task(gen: Any, demo: Any, task: str, cfg: SamplerConfig, num: int = 16,
               seed: int = 0, text_len: int = 48, lengths: str = "oracle",
               offset: int = 0) -> TaskScore:
    """Sample `task` on held-out items offset .. offset + num - 1 (in the order above) and
    score every output. Disjoint offsets give disjoint prompt sets: a setting chosen on one
    set is scored without selection bias on another."""
    task = task_name(task)
    if lengths not in LENGTHS:
        raise ValueError(f"lengths must be one of {LENGTHS}, got {lengths!r}")
    if task in ("t2i", "i2t"):
        images, recs = demo.image_text("valid")
        # alternate digits and shapes so both attribute families are scored
        dig = [i for i, r in enumerate(recs) if r["source"] == "digit"]
        shp = [i for i, r in enumerate(recs) if r["source"] == "shape"]
        order = [x for pair in zip(dig, shp) for x in pair][offset:offset + num]
        images, recs = images[order], [recs[i] for i in order]
        captions = [r["caption"] for r in recs]
        if task == "t2i":
            out = gen.t2i(captions, cfg, seed)
            hits = demo.image_checker().item_hits(out, recs)
            m, iv, items = _from_items(hits, seed)
            m["num_digits"] = int(np.isfinite(hits.get("digit", np.zeros(0))).sum())
            m["num_shapes"] = int(np.isfinite(hits.get("shape", np.zeros(0))).sum())
            return TaskScore(m, iv, items, out, captions)
        return _to_text(gen, gen.i2t, images, captions, lengths, cfg, seed,
                        lambda: [r["caption"] for r in demo.image_text("train")[1]])
    if task in ("t2s", "s2t"):
        waves, recs = demo.audio_text("valid")
        # round-robin over the spoken words (the split is stored sorted by word)
        idx = np.asarray(_round_robin([r.get("label", r["text"]) for r in recs]))
        idx = idx[_sel(len(idx), num, offset)]
        waves, recs = waves[idx], [recs[i] for i in idx]
        texts = [r["text"] for r in recs]
        if task == "t2s":
            out = gen.t2s(texts, cfg, seed)
            sr = demo.sample_rate
            n = min(len(out), len(waves))
            mcd = [mcd_dtw(out[i][: waves.shape[1]], waves[i], sr) for i in range(n)]
            dur = [abs(speech_duration(out[i], sr) - speech_duration(waves[i], sr)) for i in range(n)]
            labels = np.asarray([r["label"] for r in recs])
            pred = demo.audio_checker().predict(out[:, : waves.shape[1]])
            items = {"mcd_db": np.asarray(mcd), "duration_error_s": np.asarray(dur),
                     "word_accuracy": (np.asarray(pred) == labels).astype(np.float64)}
            m, iv, items = _from_items(items, seed)
            return TaskScore(m, iv, items, out, texts)
        return _to_text(gen, gen.s2t, waves, texts, lengths, cfg, seed,
                        lambda: [r["text"] for r in demo.audio_text("train")[1]])
    if task == "text":
        out = gen.text(num, text_len, cfg, seed=seed + offset)
        tok = gen.tokenizers["text"]
        held = [tok.encode(d) for d in demo.text("valid")] or [tok.encode(d) for d in demo.text("train")[:50]]
        samples = [tok.encode(o) for o in out]
        m = text_statistics(samples, held)
        iv = text_statistics_interval(samples, held, seed=seed)
        iv = {k: (max(0.0, lo), hi) for k, (lo, hi) in iv.items()}   # all three are >= 0
        reps = [1 - len(set(zip(s, s[1:]))) / max(len(s) - 1, 1) for s in samples]
        return TaskScore(m, iv, {"repetition_rate": reps}, out, [])
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def evaluate_task(gen: Any, demo: Any, task: str, cfg: SamplerConfig, num: int = 16,
                  seed: int = 0, text_len: int = 48, lengths: str = "oracle", offset: int = 0
                  ) -> tuple[dict[str, float], Any, list[str]]:
    """(metrics with `_lo` / `_hi` 95% bounds, outputs, prompts): score_task, flattened."""
    s = score_task(gen, demo, task, cfg, num=num, seed=seed, text_len=text_len, lengths=lengths,
                   offset=offset)
    return s.flat(), s.outputs, s.prompts


def _to_text(gen: Any, sample: Any, media: Any, refs: list[str], lengths: str,
             cfg: SamplerConfig, seed: int, train_texts: Any) -> TaskScore:
    """i2t / s2t: `sample(media, token lengths, cfg, seed)` scored against `refs`; the lengths
    are the references' ("oracle") or, for every output, prior_length of `train_texts()`
    ("prior", recorded as the metric `prior_length`)."""
    tok = gen.tokenizers["text"]
    if lengths == "oracle":
        lens = [len(tok.encode(r)) for r in refs]
    else:
        lens = [prior_length(tok, train_texts())] * len(refs)
    s = _text_match(sample(media, lens, cfg, seed), refs, seed)
    if lengths == "prior":
        s.metrics["prior_length"] = lens[0] if lens else 0
    return s


def _text_match(hyp: list[str], ref: list[str], seed: int) -> TaskScore:
    items = {"exact_match": np.asarray([float(h.strip() == r.strip()) for h, r in zip(hyp, ref)]),
             "cer": np.asarray([cer(h.strip(), r.strip()) for h, r in zip(hyp, ref)])}
    m, iv, items = _from_items(items, seed)
    return TaskScore(m, iv, items, hyp, ref)
