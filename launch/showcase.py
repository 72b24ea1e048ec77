"""`make showcase`: one tri-modal model that does every task, trained on the embedded demo data
and scored on held-out prompts with 95% intervals.

    1. the demo data set and its token shards (launch.demo.prepare_data; cached by `make demo`)
    2. train experiments/showcase.py's run (one ladder-size model on text, image-text both
       directions and audio-text both directions, with task tokens) through the launcher's
       local executor: a progress bar, per-run logs, resumable from its checkpoints
    3. the learning curves: held-out bits per token per modality, and the training loss,
       against tokens (learning_curves.png)
    4. scores: every task (text, t2i, i2t, t2s, s2t) at the sampling defaults
       (mdm/sampling_defaults.py) on `--prompts` held-out prompts (t2i: that many of digits
       and of shapes), on the final checkpoint and on two earlier ones (1/3, 2/3; score versus tokens);
       captioning and ASR with the reference's length (oracle) and with the training split's
       most common length (no oracle); text against a unigram baseline and real held-out text
    5. guidance: t2i and t2s at classifier-free guidance weights 0..4 (guidance.png)
    6. the report: report.md, report.json, PNGs (learning curves, score vs tokens, guidance,
       T2I samples) and WAVs (T2S samples), under <out>/showcase_report/

    python -m launch.showcase [--prompts 100] [--size s4 --tokens 2e7] [--out runs]

`--study` then runs the sampling-defaults study on the showcase checkpoint (experiments/
sampling.py showcase_sweep `defaults`: one factor at a time around each task's default, on
prompts disjoint from the report's), decides the defaults with analysis.sampling_defaults
(intervals; settings that differ from the best beyond noise marked) and writes them to
<out>/showcase_report/sampling_defaults/ (defaults.json, sampling_table.md, and
sampling_defaults.py: the text of mdm/sampling_defaults.py for this choice) for the README table
and mdm/sampling_defaults.py.

Sampling runs are mdm.eval_samples run directories (<out>/showcase-score/<task>-final/, ...),
made in this process (one JAX start for all of them) by the same function the entry point
calls; a finished one is reused when the checkpoint it sampled is unchanged. Everything reruns
in well under a minute once done.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from typing import Any

from mdm.run_contract import GENERATION_TASKS

# targets of the issue that defines the showcase: (task, metric, bound, "min" | "max")
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("t2i", "digit", 0.60, "min"), ("t2i", "shape", 0.60, "min"), ("t2i", "colour", 0.60, "min"),
    ("t2i", "position", 0.60, "min"), ("t2s", "word_accuracy", 0.40, "min"),
    ("i2t", "cer", 0.25, "max"), ("s2t", "cer", 0.35, "max"))
DECISIVE = {"text": "bigram_js", "t2i": "attribute_accuracy", "i2t": "cer",
            "t2s": "word_accuracy", "s2t": "cer"}


def _say(msg: str) -> None:
    print(f"[showcase] {msg}", flush=True)


# --- training --------------------------------------------------------------------------------------
def train(runs_root: str, shards: str, manifest: dict[str, Any], sweep_arg: str) -> str:
    """Run experiments/showcase.py's sweep (one run) with the local executor, with a progress
    bar over its training tokens (read from the run's metrics.jsonl); its run dir."""
    import threading

    from launch.api import run_sweep
    from launch.expand import plan
    ts = manifest["token_space"]
    sets = {f"token_space.{k}": str(ts[k]) for k in ("text_vocab", "image_vocab", "audio_vocab")}
    expr = f"experiments/showcase.py:{sweep_arg},source=shards,path={os.path.abspath(shards)}"
    _, specs = plan(expr, runs_root, sets, None, None)
    from experiments.showcase import get_config
    total = float(get_config(specs[0].arg).train.total_tokens)
    done = threading.Event()
    watcher = threading.Thread(target=_token_bar, args=(specs[0].run_dir, total, done),
                               daemon=True)
    watcher.start()
    try:
        res = run_sweep(expr, runs_root, sets, executor="local", parallel=1)
    finally:
        done.set()
        watcher.join(timeout=5)
    if res.failed:
        raise RuntimeError(f"the showcase run failed; see {runs_root}/{res.name}/.launch/logs")
    return res.specs[0].run_dir


def _token_bar(run_dir: str, total: float, done: Any) -> None:
    """tqdm over the run's training tokens, polled from the last line of its metrics.jsonl."""
    from tqdm import tqdm
    path = os.path.join(run_dir, "metrics.jsonl")
    with tqdm(total=int(total), desc="training", unit="tok", unit_scale=True, file=sys.stdout,
              mininterval=2.0) as bar:
        while True:
            last = _last_record(path)
            if last:
                bar.n = int(last.get("tokens") or 0)
                bar.set_postfix(loss=f"{last.get('loss', float('nan')):.3f}", refresh=False)
                bar.refresh()
            if done.wait(2.0):
                return


def _last_record(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def checkpoint_steps(run_dir: str) -> list[int]:
    from mdm.eval_samples import _checkpoint_steps
    return _checkpoint_steps(run_dir)


def earlier_steps(steps: list[int], fractions: tuple[float, ...] = (1 / 3, 2 / 3)) -> list[int]:
    """The kept checkpoints nearest to `fractions` of the last one (distinct, before it)."""
    if len(steps) < 2:
        return []
    last = steps[-1]
    out = []
    for f in fractions:
        s = min(steps[:-1], key=lambda x: abs(x - f * last))
        if s not in out:
            out.append(s)
    return out


# --- sampling runs (mdm.eval_samples, in this process) ---------------------------------------------
def _finished(workdir: str, cfg: Any, ck_step: int) -> dict[str, Any] | None:
    from mdm import run_contract as rc
    try:
        with open(os.path.join(workdir, rc.CONFIG_FILE)) as f:
            old = json.load(f)
        with open(os.path.join(workdir, rc.SUMMARY_FILE)) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    same = old.get("config") == json.loads(json.dumps(cfg.to_dict()))    # tuples as JSON lists
    if (not os.path.exists(os.path.join(workdir, rc.DONE_FILE)) or not same
            or summary.get("checkpoint_step") != ck_step):
        return None
    return summary


def run_sampling_sweep(sweep: Any, runs_root: str, desc: str) -> dict[str, dict[str, Any]]:
    """Each point of an experiments/sampling.py showcase sweep as an mdm.eval_samples run dir
    <runs_root>/<sweep>/<point>; {point name: its summary}. Finished ones are reused."""
    from tqdm import tqdm

    from experiments import sampling as S
    from mdm.eval_samples import resolve_checkpoint, run_sampling
    out: dict[str, dict[str, Any]] = {}
    for p in tqdm(sweep.points, desc=desc, unit="run", file=sys.stdout, mininterval=1.0):
        cfg = S.get_config(p.arg)
        cfg.run_id, cfg.sweep = p.name, sweep.name
        wd = os.path.join(runs_root, sweep.name, p.name)
        _, _, step = resolve_checkpoint(str(cfg.sampling.checkpoint), int(cfg.sampling.step))
        summary = _finished(wd, cfg, step)
        if summary is None:
            summary = run_sampling(cfg, wd)
        out[p.name] = {**summary, "workdir": wd}
    return out


def task_scores(summaries: dict[str, dict[str, Any]], name: str, task: str) -> dict[str, float]:
    return summaries[name]["sampling"][task]


# --- text baselines ---------------------------------------------------------------------------------
def text_baselines(demo: Any, tokenizer: Any, num: int, length: int, seed: int = 0
                   ) -> dict[str, float]:
    """Bigram / unigram JS to the held-out text of (a) `num` samples of `length` tokens drawn
    i.i.d. from the training split's unigram distribution, (b) `num` windows of real held-out
    text of the same length (what a perfect model would score at this sample size)."""
    import numpy as np

    from mdm.gen_metrics import text_statistics
    rng = np.random.default_rng(seed)
    train = [t for d in demo.text("train")[:4000] for t in tokenizer.encode(d)]
    held_docs = [tokenizer.encode(d) for d in demo.text("valid")]
    ids, counts = np.unique(np.asarray(train), return_counts=True)
    uni = [list(rng.choice(ids, size=length, p=counts / counts.sum())) for _ in range(num)]
    stream = [t for d in held_docs for t in d]
    starts = rng.integers(0, max(1, len(stream) - length), num)
    real = [stream[s:s + length] for s in starts]
    b_uni = text_statistics(uni, held_docs)
    b_real = text_statistics(real, held_docs)
    return {"unigram_bigram_js": b_uni["bigram_js"], "unigram_unigram_js": b_uni["unigram_js"],
            "heldout_bigram_js": b_real["bigram_js"], "heldout_unigram_js": b_real["unigram_js"]}


# --- figures ----------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_learning_curves(run_dir: str, path: str) -> dict[str, Any]:
    """Held-out bits per token per modality (with +-2 standard errors) and the training loss
    against tokens; returns the curves."""
    from mdm import run_contract as rc
    plt = _plt()
    ev, _ = rc.read_jsonl(os.path.join(run_dir, rc.EVAL_FILE))
    mt, _ = rc.read_jsonl(os.path.join(run_dir, rc.METRICS_FILE))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    curves: dict[str, Any] = {"tokens": [r.get("tokens") for r in ev]}
    for m in ("text", "image", "audio"):
        ys = [r.get(f"bits_{m}") for r in ev]
        se = [r.get(f"bits_se_{m}", 0.0) or 0.0 for r in ev]
        curves[m] = ys
        if any(y is not None for y in ys):
            a1.errorbar(curves["tokens"], ys, yerr=[2 * s for s in se], marker="o", ms=3,
                        capsize=2, label=m)
    a1.set(xlabel="training tokens", ylabel="held-out bits per token",
           title="held-out loss (+-2 s.e.)")
    a1.legend()
    a2.plot([r.get("tokens") for r in mt], [r.get("loss") for r in mt], lw=0.8)
    a2.set(xlabel="training tokens", ylabel="training loss (nats)", title="training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return curves


def _errorbar(ax: Any, xs: list[float], scores: list[dict[str, Any]], m: str) -> None:
    """Metric `m` of each score dict at xs, with its 95% interval (`<m>_lo` / `<m>_hi`) as
    asymmetric error bars (clipped at 0 where an interval does not hold the value)."""
    pts = [(x, s) for x, s in zip(xs, scores) if m in s]
    if not pts:
        return
    ys = [s[m] for _, s in pts]
    lo = [max(0.0, s[m] - s.get(f"{m}_lo", s[m])) for _, s in pts]
    hi = [max(0.0, s.get(f"{m}_hi", s[m]) - s[m]) for _, s in pts]
    ax.errorbar([x for x, _ in pts], ys, yerr=[lo, hi], marker="o", ms=3, capsize=2, label=m)


def plot_score_vs_tokens(points: list[dict[str, Any]], path: str) -> None:
    """Each task's decisive metric (with its 95% interval) at the scored checkpoints."""
    plt = _plt()
    tasks = [t for t in GENERATION_TASKS if any(t in p["scores"] for p in points)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2))
    for ax, t in zip(axes if len(tasks) > 1 else [axes], tasks):
        metrics = ["digit", "shape", "colour", "position"] if t == "t2i" else [DECISIVE[t]]
        for m in metrics:
            _errorbar(ax, [p["tokens"] for p in points], [p["scores"].get(t, {}) for p in points], m)
        for tt, m, bound, _ in TARGETS:
            if tt == t:
                ax.axhline(bound, color="grey", lw=0.6, ls="--")
        ax.set(title=t, xlabel="training tokens")
        ax.legend(fontsize=7)
    fig.suptitle("score versus training tokens (95% intervals; dashed: targets)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_guidance(rows: list[dict[str, Any]], path: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (t, metrics) in zip(axes, (("t2i", ("digit", "shape", "colour", "position", "size")),
                                       ("t2s", ("word_accuracy",)))):
        rs = sorted((r for r in rows if r["task"] == t), key=lambda r: r["guidance"])
        for m in metrics:
            _errorbar(ax, [r["guidance"] for r in rs], [r["scores"] for r in rs], m)
        ax.set(title=f"{t}: score vs guidance weight", xlabel="guidance weight w",
               ylabel="accuracy", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_examples(score_dir: str, out: str, n_images: int = 4, n_wavs: int = 2) -> dict[str, Any]:
    """Copy the first T2I images and T2S clips of the final scoring into the report, named by
    their prompt (t2i_00_a-handwritten-digit-eight.png, t2s_00_zero.wav), with a grid PNG."""
    import re
    files: dict[str, Any] = {"t2i": [], "t2s": []}
    for task, n, ext in (("t2i", n_images, "png"), ("t2s", n_wavs, "wav")):
        d = os.path.join(score_dir, f"{task}-final", "samples", task)
        meta_path = os.path.join(d, "samples.json")
        if not os.path.exists(meta_path):
            continue
        with open(meta_path) as f:
            meta = json.load(f)
        for i, (fn, prompt) in enumerate(zip(meta["files"][:n], meta["prompts"][:n])):
            slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48]
            name = f"{task}_{i:02d}_{slug}.{ext}"
            shutil.copyfile(os.path.join(d, fn), os.path.join(out, name))
            files[task].append({"file": name, "prompt": prompt})
    return files


def t2i_grid(score_dir: str, path: str, n: int = 16) -> bool:
    import matplotlib.image as mpimg
    plt = _plt()
    d = os.path.join(score_dir, "t2i-final", "samples", "t2i")
    if not os.path.exists(os.path.join(d, "samples.json")):
        return False
    with open(os.path.join(d, "samples.json")) as f:
        meta = json.load(f)
    k = min(n, len(meta["files"]))
    cols = 4
    fig, axes = plt.subplots((k + cols - 1) // cols, cols, figsize=(2.4 * cols, 2.5 * ((k + cols - 1) // cols)))
    for ax in getattr(axes, "flat", [axes]):
        ax.axis("off")
    for ax, fn, cap in zip(getattr(axes, "flat", [axes]), meta["files"][:k], meta["prompts"][:k]):
        ax.imshow(mpimg.imread(os.path.join(d, fn)))
        ax.set_title(cap, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- the report ---------------------------------------------------------------------------------------
def _ci(s: dict[str, Any], m: str, digits: int = 3) -> str:
    v = s.get(m)
    if v is None or not math.isfinite(v):
        return "n/a"
    lo, hi = s.get(f"{m}_lo"), s.get(f"{m}_hi")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def target_rows(final: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target: the measured value, its interval, and whether the target is met
    (the point estimate on the right side of the bound) and whether it is met beyond noise
    (the whole 95% interval on the right side)."""
    rows = []
    for task, m, bound, kind in TARGETS:
        s = final.get(task, {})
        v = s.get(m)
        if v is None:
            continue
        lo, hi = s.get(f"{m}_lo", v), s.get(f"{m}_hi", v)
        met = v >= bound if kind == "min" else v <= bound
        sure = lo >= bound if kind == "min" else hi <= bound
        rows.append({"task": task, "metric": m, "value": v, "interval": [lo, hi],
                     "target": f"{'>=' if kind == 'min' else '<='} {bound:g}", "met": bool(met),
                     "met_beyond_noise": bool(sure), "num_prompts": s.get("num_prompts")})
    return rows


def write_report(out: str, info: dict[str, Any]) -> str:
    final = info["final"]
    L = ["# The showcase: one tri-modal masked-diffusion model, every task", ""]
    r = info["run"]
    L += [f"One model (`{info['size']}`: {r['params_non_embedding']:,} transformer parameters, "
          f"{r['params_total']:,} in all) trained from scratch for {r['tokens']:.3g} tokens "
          f"({r['steps']} steps, {r['wall_s'] / 60:.1f} min) on the demo set: text, image-text "
          "both directions (T2I, I2T) and audio-text both directions (T2S, S2T), with task "
          f"tokens. Run: `{info['run_dir']}`. Each task is scored at the sampling defaults on "
          f"held-out prompts ({info['prompts']} per task; t2i: {info['prompts']} digit and "
          f"{info['prompts']} shape captions), 95% intervals in brackets (Wilson for "
          "accuracies, bootstrap over prompts otherwise).", ""]
    L += ["## Scores against the targets", "",
          "| task | metric | measured [95% CI] | target | met | prompts |", "|---|---|---|---|---|---|"]
    for row in info["targets"]:
        met = ("yes" if row["met_beyond_noise"] else "yes (within noise)") if row["met"] else "**no**"
        L.append(f"| {row['task']} | {row['metric']} | {_ci(final[row['task']], row['metric'])} "
                 f"| {row['target']} | {met} | {int(row['num_prompts'] or 0)} |")
    L.append("")
    t2i, t2s = final.get("t2i", {}), final.get("t2s", {})
    L += ["## Every task", "",
          f"- **T2I** ({info['samplers']['t2i']}): digit {_ci(t2i, 'digit')} (chance 0.1; "
          f"the checker reads decoded real held-out images at "
          f"{(info['checker_ceiling'].get('image') or {}).get('digit', float('nan')):.3f}), "
          f"shape {_ci(t2i, 'shape')}, colour {_ci(t2i, 'colour')}, position "
          f"{_ci(t2i, 'position')}, size {_ci(t2i, 'size')}, all four shape attributes "
          f"{_ci(t2i, 'shape_all')}.",
          f"- **T2S** ({info['samplers']['t2s']}): word accuracy {_ci(t2s, 'word_accuracy')} "
          f"(chance 0.1; the audio checker reads held-out real speech at "
          f"{info['checker_ceiling'].get('audio') or float('nan'):.3f} after the tokenizer "
          "round trip), MCD-DTW "
          f"{_ci(t2s, 'mcd_db', 2)} dB, duration error {_ci(t2s, 'duration_error_s')} s."]
    for t, what in (("i2t", "captioning"), ("s2t", "ASR")):
        o, p = final.get(t, {}), info["prior"].get(t, {})
        L.append(f"- **{t.upper()}** ({what}, {info['samplers'][t]}): CER {_ci(o, 'cer')}, exact "
                 f"match {_ci(o, 'exact_match')} with the reference's length in tokens (oracle); "
                 f"without it (every output {p.get('prior_length', float('nan')):.0f} tokens, the training "
                 f"split's most common length): CER {_ci(p, 'cer')}, exact match "
                 f"{_ci(p, 'exact_match')}.")
    tx, b = final.get("text", {}), info["text_baselines"]
    L += [f"- **Text** ({info['samplers']['text']}): bigram JS to held-out text "
          f"{_ci(tx, 'bigram_js')} nats against {b['unigram_bigram_js']:.3f} for samples of the "
          f"training unigram distribution and {b['heldout_bigram_js']:.3f} for real held-out text "
          f"of the same size (the floor at this sample size); unigram JS {_ci(tx, 'unigram_js')}, "
          f"repetition {_ci(tx, 'repetition_rate')}.", ""]
    if info["text_samples"]:
        L += ["Text samples:", ""] + [f"> {s.strip()[:300]}" + "\n" for s in info["text_samples"]]
    L += ["## Samples", "", "![T2I samples](t2i_samples.png)", "",
          "Files: " + ", ".join(f"`{f['file']}`" for f in info["examples"]["t2i"] + info["examples"]["t2s"]),
          "", "## Learning curves", "", "![learning curves](learning_curves.png)", "",
          "## Score versus training tokens", "",
          "Each task at the sampling defaults on the same prompts, at kept checkpoints:", "",
          "![score vs tokens](score_vs_tokens.png)", "",
          "| tokens | " + " | ".join(f"{t} {DECISIVE[t]}" for t in GENERATION_TASKS) + " |",
          "|---" * (len(GENERATION_TASKS) + 1) + "|"]
    for p in info["curve"]:
        L.append(f"| {p['tokens']:.3g} | " + " | ".join(
            _ci(p["scores"].get(t, {}), DECISIVE[t]) for t in GENERATION_TASKS) + " |")
    L += ["", info["curve_reading"], "", "## Classifier-free guidance", "",
          "![guidance](guidance.png)", "", "| task | w | scores |", "|---|---|---|"]
    for g in info["guidance"]:
        keys = ("digit", "shape", "colour", "position") if g["task"] == "t2i" else ("word_accuracy", "mcd_db")
        L.append(f"| {g['task']} | {g['guidance']:g} | " + ", ".join(
            f"{k} {_ci(g['scores'], k)}" for k in keys) + " |")
    L += ["", info["guidance_reading"], "", "## Time", "",
          ", ".join(f"{k} {v:.0f} s" for k, v in info["timings"].items())
          + f"; total {sum(info['timings'].values()) / 60:.1f} min.", "",
          "## Files", "", "- `report.json`: every number on this page; the sampling runs: "
          f"`{info['score_root']}` (mdm.eval_samples run dirs: summary.json, samples/<task>/ "
          "with items.json, the per-prompt scores)", ""]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path


def _curve_reading(curve: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """Where each missed target's metric is heading, from the last two scored checkpoints."""
    missed = [r for r in rows if not r["met"]]
    if not missed:
        return "Every target is met at the final checkpoint."
    parts = []
    for r in missed:
        pts = [(p["tokens"], p["scores"].get(r["task"], {}).get(r["metric"])) for p in curve]
        pts = [(t, v) for t, v in pts if v is not None and math.isfinite(v)]
        if len(pts) < 2:
            continue
        (t0, v0), (t1, v1) = pts[-2], pts[-1]
        bound = float(r["target"].split()[-1])
        slope = (v1 - v0) / math.log(t1 / t0) if t1 > t0 else 0.0    # per e-fold of tokens
        gap = bound - v1
        if slope == 0 or gap / slope < 0:
            parts.append(f"{r['task']} {r['metric']} {v1:.3f} (target {r['target']}) did not "
                         f"improve over the last doubling of tokens")
        else:
            need = t1 * math.exp(min(gap / slope, 50.0))
            where = (f"it reaches the target near {need:.2g} tokens ({need / t1:.1f}x)"
                     if need < 100 * t1 else "at this rate it needs over 100x the tokens")
            parts.append(f"{r['task']} {r['metric']} {v1:.3f} (target {r['target']}) moved "
                         f"{v1 - v0:+.3f} from {t0:.3g} to {t1:.3g} tokens; log-linear in tokens "
                         + where)
    return ("Missed targets, read off the curve (a log-linear extrapolation of the last two "
            "checkpoints, a rough guide, not a law): " + "; ".join(parts) + ".")


def _guidance_reading(rows: list[dict[str, Any]]) -> str:
    out = []
    for t, m in (("t2i", "attribute_accuracy"), ("t2s", "word_accuracy")):
        rs = {r["guidance"]: r["scores"] for r in rows if r["task"] == t}
        if 0.0 not in rs or len(rs) < 2:
            continue
        best_w = max(rs, key=lambda w: rs[w].get(m, -1))
        b, z = rs[best_w], rs[0.0]
        beyond = b.get(f"{m}_lo", b[m]) > z.get(f"{m}_hi", z[m])
        out.append(f"{t}: {m} {z[m]:.3f} without guidance, best {b[m]:.3f} at w = {best_w:g} "
                   + ("(better beyond the 95% intervals)" if beyond and best_w != 0 else
                      "(the intervals overlap: no gain beyond noise)" if best_w != 0 else
                      "(guidance does not help)"))
    return "Guidance, read: " + "; ".join(out) + "." if out else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.showcase", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small", help="demo data scale: small | tiny")
    ap.add_argument("--data", default="data", help="cache directory for data and shards")
    ap.add_argument("--demo_dir", default="", help="use an already built demo data set")
    ap.add_argument("--out", default="runs", help="runs root (the report: <out>/showcase_report)")
    ap.add_argument("--sweep", default="showcase",
                    help="experiments/showcase.py sweep argument (e.g. smoke, or size=s3,tokens=1e7)")
    ap.add_argument("--prompts", type=int, default=100, help="held-out prompts per task")
    ap.add_argument("--study", action="store_true",
                    help="also run the sampling-defaults study on the checkpoint")
    a = ap.parse_args(argv)
    from launch.demo import Laps, load_demo_data, quiet_absl
    quiet_absl()
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()
    from experiments import sampling as S
    from experiments.showcase import SEQ_LEN
    lap = Laps()
    os.makedirs(a.out, exist_ok=True)
    _say("1/6 demo data and token shards (cached by `make demo`)")
    data = load_demo_data(a.data, a.scale, SEQ_LEN, a.demo_dir)
    if data is None:
        return 2
    demo, shards, manifest = data
    lap("data")
    _say(f"2/6 training experiments/showcase.py:{a.sweep} (resumable; Ctrl-C stops at a checkpoint)")
    try:
        run_dir = train(a.out, shards, manifest, a.sweep)
    except KeyboardInterrupt:
        _say("interrupted: run the same command again to resume")
        return 130
    lap("train")
    out = os.path.join(a.out, "showcase_report")
    os.makedirs(out, exist_ok=True)
    _say("3/6 learning curves")
    plot_learning_curves(run_dir, os.path.join(out, "learning_curves.png"))
    with open(os.path.join(run_dir, "summary.json")) as f:
        run_summary = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        resolved = json.load(f)["resolved"]
    steps = checkpoint_steps(run_dir)
    early = earlier_steps(steps)
    _say(f"4/6 scoring every task on {a.prompts} held-out prompts: final checkpoint (step "
         f"{steps[-1]}) and steps {early}")
    ck = f"checkpoint={run_dir},num={a.prompts}"
    score = run_sampling_sweep(S.showcase_sweep(
        f"score,{ck},ckpt_steps={'+'.join(str(s) for s in [-1, *early])}"), a.out, "scoring")
    final = {t: task_scores(score, f"{t}-final", t) for t in GENERATION_TASKS}
    prior = {t: task_scores(score, f"{t}-final-prior", t) for t in ("i2t", "s2t")}
    tps = run_summary["tokens"] / max(run_summary["steps"], 1)
    curve = [{"step": s, "tokens": s * tps,
              "scores": {t: task_scores(score, f"{t}-at{s}", t) for t in GENERATION_TASKS}}
             for s in early]
    curve.append({"step": steps[-1], "tokens": float(run_summary["tokens"]), "scores": final})
    plot_score_vs_tokens(curve, os.path.join(out, "score_vs_tokens.png"))
    lap("scores")
    _say("5/6 classifier-free guidance sweep (t2i, t2s: w = 0..4)")
    gsum = run_sampling_sweep(S.showcase_sweep(f"guidance,{ck}"), a.out, "guidance")
    grows = [{"task": n.split("-")[0], "guidance": float(n.rsplit("-g", 1)[1]),
              "scores": s["sampling"][n.split("-")[0]]} for n, s in gsum.items()]
    plot_guidance(grows, os.path.join(out, "guidance.png"))
    lap("guidance")
    _say("6/6 report")
    score_root = os.path.join(a.out, "showcase-score")
    t2i_grid(score_root, os.path.join(out, "t2i_samples.png"))
    examples = save_examples(score_root, out)
    from mdm.generation_tasks import DEFAULTS
    text_dir = os.path.join(score_root, "text-final", "samples", "text")
    text_samples = []
    if os.path.exists(os.path.join(text_dir, "samples.json")):
        with open(os.path.join(text_dir, "samples.json")) as f:
            for fn in json.load(f)["files"][:3]:
                with open(os.path.join(text_dir, fn)) as g:
                    text_samples.append(g.read())
    rows = target_rows(final)
    checkers = demo.summary.get("checkers") or {}
    ceiling = {k: (checkers.get(k) or {}).get("decoded_valid") for k in ("image", "audio")}
    info = {
        "size": os.path.basename(run_dir).split("-")[0], "run_dir": run_dir,
        "run": {k: run_summary.get(k) or resolved.get(k) for k in
                ("params_total", "params_non_embedding", "tokens", "steps", "wall_s")},
        "prompts": a.prompts, "final": final, "prior": prior,
        "targets": rows, "curve": curve, "curve_reading": _curve_reading(curve, rows),
        "guidance": grows, "guidance_reading": _guidance_reading(grows),
        "samplers": {t: f"{c.method}, {c.steps} steps, T={c.temperature:g}, w={c.guidance:g}"
                     for t, c in DEFAULTS.items()},
        "text_baselines": text_baselines(demo, demo.tokenizer("text"), a.prompts, 48),
        "text_samples": text_samples, "examples": examples, "checker_ceiling": ceiling,
        "score_root": score_root, "timings": lap.timings}
    lap("report")
    path = write_report(out, info)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({k: v for k, v in info.items() if k not in ("text_samples",)}, f, indent=2,
                  default=float)
    for r in rows:
        _say(f"{r['task']} {r['metric']}: {r['value']:.3f} [{r['interval'][0]:.3f}, "
             f"{r['interval'][1]:.3f}] (target {r['target']}: {'met' if r['met'] else 'not met'})")
    if a.study:
        return sampling_study(a, run_dir, out)
    print(path)
    return 0


def sampling_study(a: Any, run_dir: str, out: str) -> int:
    """The sampling-defaults study on the showcase checkpoint, decided by
    analysis.sampling_defaults; the chosen settings are the first rows of its tables."""
    from experiments import sampling as S
    sweep = S.showcase_sweep(f"defaults,checkpoint={run_dir},num={a.prompts},offset={a.prompts}")
    _say(f"sampling-defaults study: {len(sweep.points)} settings x {a.prompts} prompts")
    run_sampling_sweep(sweep, a.out, "sampling study")
    from analysis import sampling_defaults as SD
    dest = os.path.join(out, "sampling_defaults")
    code = SD.main([a.out, "--sweep", f"^{sweep.name}$", "--out", dest, "--write-module"])
    if code == 0:
        _say(f"the study's choice: {dest}/sampling_defaults.py; adopt it with "
             f"`cp {dest}/sampling_defaults.py mdm/sampling_defaults.py`")
    print(os.path.join(dest, "sampling_table.md"))
    return code


if __name__ == "__main__":
    sys.exit(main())
