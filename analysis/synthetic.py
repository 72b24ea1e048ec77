"""Synthetic runs roots: contract-conforming run directories generated from known laws plus noise.

Used by the loader, figure, CLI and notebook tests (and `mdm-analysis synth OUT`) until the
trainer produces real runs. Every file follows `mdm.run_contract`; the sweeps are

  isoflop     4 compute budgets x 7 model sizes around each budget's optimum, tri-modal; final
              bits per modality from L_m(N, D) = E_m + A_m/N^alpha_m + B_m/D^beta_m (SYNTH_LAWS)
              times lognormal noise; eval curves follow L_m(N, tokens). Also holds one run
              killed mid-write (torn last metrics line, still done), one unfinished run
              (no summary, no DONE) and one preempted run.
  mixing      12 mixtures of (text, image, audio), L_m(r) = c_m + k_m exp(t_m . r) (SYNTH_MIXING).
  batch_size  3 model sizes x 7 physical batches; loss(step) = E + K (step / (1 + B_noise/B))^-g,
              so the steps to the target E + K S_min^-g are S_min (1 + B_noise / B) (SYNTH_BATCH).
  sde         4 physical batches, with and without the SDE reparameterization: with it the
              curves collapse onto one, without it they fan out with log(B / B_ref).
  schedules   3 noise schedules x 2 seeds, schedule offsets in SYNTH_SCHEDULES.
  sampling    sampler settings (steps, temperature) with sample metrics in summary.json.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from mdm.run_contract import CONFIG_FILE, DONE_FILE, EVAL_FILE, METRICS_FILE, MODALITIES, SUMMARY_FILE


def write_json_atomic(path: str, obj: Any) -> None:
    """As mdm.run_contract.write_json_atomic (temp file + rename), without the fsync."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, allow_nan=True)
    os.replace(tmp, path)


def _write_jsonl(path: str, records: list[dict]) -> None:
    """The same lines `mdm.run_contract.append_jsonl` writes, in one go (no per-line fsync:
    synthetic roots are written in bulk, and fsyncing thousands of lines takes seconds)."""
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True, allow_nan=True) + "\n")

SYNTH_LAWS: dict[str, dict[str, float]] = {
    "text": {"E": 1.6, "A": 400.0, "B": 900.0, "alpha": 0.34, "beta": 0.30},
    "image": {"E": 2.8, "A": 250.0, "B": 1500.0, "alpha": 0.30, "beta": 0.33},
    "audio": {"E": 2.2, "A": 300.0, "B": 1200.0, "alpha": 0.32, "beta": 0.28},
}
SYNTH_MIXING: dict[str, dict[str, Any]] = {  # L_m(r) = c + k exp(t . r), r = (text, image, audio)
    "text": {"c": 2.4, "k": 1.5, "t": [-2.0, 0.2, 0.1]},
    "image": {"c": 3.4, "k": 1.2, "t": [0.1, -2.5, 0.2]},
    "audio": {"c": 2.9, "k": 1.3, "t": [0.2, 0.1, -2.2]},
}
SYNTH_BATCH = {"E": 2.0, "K": 8.0, "gamma": 0.5, "S_min_coef": 400.0, "S_min_exp": 0.3,
               "B_noise_coef": 30.0, "B_noise_exp": 0.4, "N_ref": 1e5}
SYNTH_SCHEDULES = {"linear": {"text": 0.00, "image": 0.06, "audio": 0.05},
                   "cosine": {"text": 0.05, "image": 0.00, "audio": 0.03},
                   "poly2": {"text": 0.10, "image": 0.12, "audio": 0.00}}
BUDGETS = (3e13, 1e14, 3e14, 1e15)
BATCH_NS = (2e5, 8e5, 3.2e6, 1.28e7)
VOCAB = 4096
SEQ_LEN = 128
MODS = MODALITIES


def law_loss(N, D, law: dict[str, float]) -> np.ndarray:
    return law["E"] + law["A"] * np.asarray(N, float) ** -law["alpha"] + law["B"] * np.asarray(D, float) ** -law["beta"]


def _shape(N: float) -> tuple[int, int, float]:
    """(width, depth, measured non-embedding N): a ladder-like shape for a target N."""
    depth = max(2, int(round((N / 12) ** (1 / 3) / 8)))
    width = max(16, int(round(math.sqrt(N / (12 * depth)))))
    return width, depth, float(N)


def flops_per_token(N: float, width: int, depth: int, seq_len: int = SEQ_LEN) -> float:
    """6 (N_non_embedding + output head) + 12 L T d (DESIGN.md section 5)."""
    return 6.0 * (N + VOCAB * width) + 12.0 * depth * seq_len * width


def _run_id(sweep: str, cfg: dict) -> str:
    h = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return f"{sweep}-{h}"


class _Writer:
    def __init__(self, root: str, rng: np.random.Generator, names: Mapping[str, str] | None = None,
                 studies: Mapping[str, str] | None = None):
        self.root = root
        self.rng = rng
        self.names = dict(names or {})        # sweep -> directory name
        self.studies = dict(studies or {})    # sweep -> recorded study
        self.run_ids: dict[str, list[str]] = {}

    def run(self, sweep: str, *, N: float, D: float, mixture: Sequence[float] = (0.5, 0.25, 0.25),
            physical_batch: int = 32, sde: bool = False, kappa: float = 1.0,
            schedule: dict | None = None, sampling: dict | None = None, seed: int = 0,
            final: dict[str, float], curve, n_eval: int = 8, status: str = "done",
            torn: bool = False, extra_summary: dict | None = None, eval_steps=None) -> str:
        width, depth, N = _shape(N)
        fpt = flops_per_token(N, width, depth)
        tps = physical_batch * SEQ_LEN
        steps = max(1, int(round(D / tps)))
        D = float(steps * tps)
        mix = dict(zip(MODS, map(float, mixture)))
        config = {
            "model": {"width": width, "depth": depth, "num_heads": max(1, width // 16)},
            "data": {"mixture": mix},
            "objective": {"schedule": schedule or {m: "linear" for m in MODS}},
            "train": {"total_tokens": D, "physical_batch": physical_batch, "seed": seed,
                      "sde": {"enabled": bool(sde), "kappa": float(kappa), "gamma": 0.0,
                              "reference_batch": 32}},
            "sampling": sampling or {"steps": 64, "temperature": 1.0},
        }
        study = self.studies.get(sweep, "")
        if study:
            config["study"] = study
        dirname = self.names.get(sweep, sweep)
        rid = _run_id(dirname, config)
        rd = os.path.join(self.root, dirname, rid)
        os.makedirs(rd, exist_ok=True)
        lr = 3e-3 * math.sqrt(kappa)
        resolved = {
            "params_total": N + 2 * VOCAB * width, "params_non_embedding": N,
            "params_embedding": 2 * VOCAB * width, "flops_per_token": fpt, "seq_len": SEQ_LEN,
            "physical_batch_seqs": physical_batch, "micro_batch_seqs": physical_batch,
            "num_micro_batches": 1,
            "logical_batch_seqs": int(round(physical_batch / kappa)) if sde else physical_batch,
            "tokens_per_step": tps, "total_tokens": D, "total_steps": steps, "lr": lr,
            "beta1": 0.9 ** kappa, "beta2": 0.95 ** kappa, "eps": 1e-8 / math.sqrt(kappa),
            "kappa": kappa, "token_space": {"text": 16, "image": 16 + 2048, "audio": 16 + 3072},
            "mesh": {"data": 1, "fsdp": 1, "tensor": 1}, "num_devices": 1, "num_processes": 1,
            "device_kind": "synthetic",
        }
        write_json_atomic(os.path.join(rd, CONFIG_FILE), {
            "config": config, "resolved": resolved, "run_id": rid, "sweep": dirname,
            **({"study": study} if study else {}), "code_version": "synthetic", "created": "2026-01-01T00:00:00Z"})
        # curve(step_fraction array, tokens array) -> {m: bits array}
        if eval_steps is None:
            eval_steps = np.unique(np.maximum(1, np.round(np.geomspace(1, steps, n_eval)).astype(int)))
        last_step = steps if status == "done" else max(1, steps // 2)
        eval_steps = [int(s) for s in eval_steps if s <= last_step]
        tok = np.array(eval_steps, float) * tps
        curves = curve(np.array(eval_steps, float), tok)
        eval_records, metric_records = [], []
        for i, s in enumerate(eval_steps):
            rec: dict[str, Any] = {"step": s, "tokens": float(tok[i]), "flops": float(tok[i] * fpt)}
            tot_n = tot_c = 0.0
            for m in MODS:
                if mix.get(m, 0.0) <= 0:
                    continue
                bits = float(curves[m][i])
                cnt = 4096 * mix[m]
                se = 0.004 * bits / math.sqrt(cnt / 1024)
                rec.update({f"bits_{m}": bits, f"nats_{m}": bits * math.log(2), f"bits_se_{m}": se,
                            f"nats_se_{m}": se * math.log(2), f"count_{m}": cnt})
                tot_n += bits * cnt
                tot_c += cnt
            rec["bits"] = tot_n / tot_c
            rec["nats"] = rec["bits"] * math.log(2)
            eval_records.append(rec)
        _write_jsonl(os.path.join(rd, EVAL_FILE), eval_records)
        n_log = 10
        log_steps = np.unique(np.maximum(1, np.round(np.linspace(1, last_step, n_log)).astype(int)))
        lcurve = curve(log_steps.astype(float), log_steps * float(tps))
        for j, s in enumerate(log_steps):
            t = float(s * tps)
            rec = {"step": int(s), "tokens": t, "flops": t * fpt, "wall_s": 0.01 * s, "lr": lr,
                   "grad_norm": 1.0, "step_time_s": 0.01, "tokens_per_s": tps / 0.01,
                   "tokens_per_s_per_device": tps / 0.01, "model_flops_per_s": fpt * tps / 0.01,
                   "mfu": 0.3}
            losses = []
            for m in MODS:
                rec[f"tokens_{m}"] = t * mix.get(m, 0.0)
                if mix.get(m, 0.0) > 0:
                    rec[f"loss_{m}"] = float(lcurve[m][j]) * math.log(2)
                    losses.append(rec[f"loss_{m}"] * mix[m])
            rec["loss"] = float(sum(losses))
            metric_records.append(rec)
        _write_jsonl(os.path.join(rd, METRICS_FILE), metric_records)
        if torn:
            with open(os.path.join(rd, METRICS_FILE), "a", encoding="utf-8") as f:
                f.write('{"step": 999999, "tokens": 1.0, "flo')
        if status != "running":
            fe = {}
            for m in MODS:
                if mix.get(m, 0.0) > 0:
                    b = float(final[m])
                    cnt = 4096 * mix[m]
                    se = 0.004 * b / math.sqrt(cnt / 1024)
                    fe[m] = {"bits": b, "nats": b * math.log(2), "bits_se": se,
                             "nats_se": se * math.log(2), "count": cnt}
            summ = {"status": status, "steps": last_step, "tokens": float(last_step * tps),
                    "flops": float(last_step * tps * fpt), "wall_s": 0.01 * last_step,
                    "final_eval": fe}
            summ.update(extra_summary or {})
            write_json_atomic(os.path.join(rd, SUMMARY_FILE), summ)
        if status == "done":
            with open(os.path.join(rd, DONE_FILE), "w") as f:
                f.write("done\n")
        self.run_ids.setdefault(sweep, []).append(rid)
        return rid


# the study each synthetic sweep's runs record with studies=True (mdm.run_contract.STUDIES)
SYNTH_STUDIES: dict[str, str] = {"isoflop": "isoflop", "mixing": "mixing",
                                 "batch_size": "batch_size", "sde": "batch_size",
                                 "schedules": "noise_schedule", "sampling": "sampling"}


def _noise(rng, sigma, size=None):
    return np.exp(rng.normal(0.0, sigma, size))


def write_synthetic_runs(root: str, seed: int = 0, sweeps: Sequence[str] = (
        "isoflop", "mixing", "batch_size", "sde", "schedules", "sampling"),
                         noise: float = 0.004, budgets: Sequence[float] = BUDGETS,
                         n_per_budget: int = 7, names: Mapping[str, str] | None = None,
                         studies: Mapping[str, str] | bool = False) -> dict[str, Any]:
    """Write a synthetic runs root under `root`; returns the ground truth and the run ids.

    names: {sweep: directory name} to file a sweep under another name. studies: {sweep: the
    study its runs record (config.json "study")}, or True for SYNTH_STUDIES; by default the runs
    record none, like runs written before the field existed (matched by sweep name).
    The returned dict has "laws" (SYNTH_LAWS), "mixing", "batch", "schedules", "run_ids"
    (per sweep), "torn_run", "unfinished_run", "preempted_run".
    """
    rng = np.random.default_rng(seed)
    w = _Writer(root, rng, names, SYNTH_STUDIES if studies is True else (studies or None))
    info: dict[str, Any] = {"laws": SYNTH_LAWS, "mixing": SYNTH_MIXING, "batch": SYNTH_BATCH,
                            "schedules": SYNTH_SCHEDULES, "noise": noise}
    if "isoflop" in sweeps:
        for bi, C in enumerate(budgets):
            law = SYNTH_LAWS["text"]
            a = law["beta"] / (law["alpha"] + law["beta"])
            G = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (law["alpha"] + law["beta"]))
            n_star = G * (C / 6.0) ** a
            for j, off in enumerate(np.linspace(-0.75, 0.75, n_per_budget)):
                N = n_star * 10 ** off
                width, depth, N = _shape(N)
                D = C / flops_per_token(N, width, depth)
                eps = {m: _noise(rng, noise) for m in MODS}
                final = {m: float(law_loss(N, D, SYNTH_LAWS[m]) * eps[m]) for m in MODS}

                def curve(steps, tok, N=N, eps=eps):
                    return {m: law_loss(N, tok, SYNTH_LAWS[m]) * eps[m] for m in MODS}

                torn = bi == 1 and j == 3
                rid = w.run("isoflop", N=N, D=D, seed=bi * 100 + j, final=final, curve=curve, torn=torn)
                if torn:
                    info["torn_run"] = rid
        # an unfinished run and a preempted one, at the largest budget's middle size
        C = budgets[-1]
        for status, key in (("running", "unfinished_run"), ("preempted", "preempted_run")):
            N = 1.1e6 if status == "running" else 1.3e6
            width, depth, N = _shape(N)
            D = C / flops_per_token(N, width, depth)
            final = {m: float(law_loss(N, D / 2, SYNTH_LAWS[m])) for m in MODS}
            info[key] = w.run("isoflop", N=N, D=D, seed=999 + len(key), final=final, status=status,
                              curve=lambda steps, tok, N=N: {m: law_loss(N, tok, SYNTH_LAWS[m]) for m in MODS})
    if "mixing" in sweeps:
        mixes = [(1 / 3, 1 / 3, 1 / 3), (0.6, 0.2, 0.2), (0.2, 0.6, 0.2), (0.2, 0.2, 0.6),
                 (0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)]
        mixes += [tuple(v) for v in 0.05 + 0.85 * rng.dirichlet(np.ones(3), size=5)]
        for i, r in enumerate(mixes):
            r = np.asarray(r) / np.sum(r)
            final = {m: float((SYNTH_MIXING[m]["c"] + SYNTH_MIXING[m]["k"] * np.exp(np.dot(SYNTH_MIXING[m]["t"], r)))
                              * _noise(rng, noise / 2)) for m in MODS}

            def curve(steps, tok, final=final):
                frac = tok / tok[-1] if len(tok) else tok
                return {m: final[m] * (1 + 0.5 * (1 - frac)) for m in MODS}

            w.run("mixing", N=8e5, D=1e8, mixture=tuple(r), seed=i, final=final, curve=curve)
    if "batch_size" in sweeps:
        p = SYNTH_BATCH
        for N in BATCH_NS:
            s_min = p["S_min_coef"] * (N / p["N_ref"]) ** p["S_min_exp"]
            b_noise = p["B_noise_coef"] * (N / p["N_ref"]) ** p["B_noise_exp"]
            for B in (8, 16, 32, 64, 128, 256, 512):
                S = s_min * (1 + b_noise / B)
                total = int(3 * S)
                ev = np.unique(np.round(np.geomspace(1, total, 60)).astype(int))

                def curve(steps, tok, b_noise=b_noise, B=B):
                    l = p["E"] + p["K"] * (np.asarray(steps) / (1 + b_noise / B)) ** -p["gamma"]
                    return {m: l for m in MODS}

                final = {m: float(curve(np.array([total]), None)[m][0]) for m in MODS}
                w.run("batch_size", N=N, D=total * B * SEQ_LEN, physical_batch=B, seed=B,
                      final=final, curve=curve, eval_steps=ev)
        info["batch_targets"] = {N: p["E"] + p["K"] * (p["S_min_coef"] * (N / p["N_ref"]) ** p["S_min_exp"]) ** -p["gamma"]
                                 for N in BATCH_NS}
    if "sde" in sweeps:
        for enabled in (False, True):
            for B in (16, 32, 64, 128):
                kappa = B / 32 if enabled else 1.0
                fan = 0.0 if enabled else 0.05 * math.log2(B / 32)

                def curve(steps, tok, fan=fan):
                    base = 2.0 + 6.0 * (np.asarray(tok) / 1e4) ** -0.35
                    return {m: base * (1 + fan * (1 - np.exp(-np.asarray(tok) / 3e6)))
                            * _noise(rng, 0.001, np.shape(tok)) for m in MODS}

                fin = curve(None, np.array([2e7]))
                w.run("sde", N=8e5, D=2e7, physical_batch=B, sde=enabled, kappa=kappa, seed=B,
                      final={m: float(fin[m][0]) for m in MODS}, curve=curve, n_eval=24)
    if "schedules" in sweeps:
        for sched, offs in SYNTH_SCHEDULES.items():
            for s in range(2):
                final = {m: float((law_loss(8e5, 1e8, SYNTH_LAWS[m]) + offs[m]) * _noise(rng, noise / 8))
                         for m in MODS}
                w.run("schedules", N=8e5, D=1e8, schedule={m: sched for m in MODS}, seed=s,
                      final=final, curve=lambda steps, tok, final=final: {m: final[m] * (1 + 0 * tok) for m in MODS})
    if "sampling" in sweeps:
        for steps_ in (16, 64, 256):
            for temp in (0.8, 1.0):
                q = 3.0 + 20.0 / steps_ + 2.0 * abs(temp - 0.9) + rng.normal(0, 0.01)
                final = {m: float(law_loss(8e5, 1e8, SYNTH_LAWS[m])) for m in MODS}
                w.run("sampling", N=8e5, D=1e8, sampling={"steps": steps_, "temperature": temp},
                      final=final, curve=lambda st, tok, final=final: {m: final[m] + 0 * tok for m in MODS},
                      extra_summary={"sampling": {"gen_nll_text": q, "steps": steps_}})
    info["run_ids"] = w.run_ids
    return info


__all__ = ["write_synthetic_runs", "SYNTH_LAWS", "SYNTH_STUDIES", "SYNTH_MIXING", "SYNTH_BATCH", "SYNTH_SCHEDULES",
           "law_loss", "flops_per_token"]
