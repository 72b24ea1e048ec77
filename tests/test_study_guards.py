"""Guards on what every study compares: each run's evaluation covers every modality, on the same
examples and masks, under the same schedule-independent parameterization, whatever the run's
schedule, mixture or batch; and the cosine schedule with complementary pairs trains stably."""
import json
import os

import numpy as np
import pytest

from experiments.base import get_config
from launch.sweeps import get_sweep, load_module, resolve
from mdm import run_contract as rc
from mdm.trainer import train

MODS = ("text", "image", "audio")
STUDIES = {  # experiment file -> (sweep argument, how many of its points to run)
    "noise_schedule.py": ("per_modality", 3),   # all-linear, text cosine, text poly:0.5
    "mixing.py": ("n=1", 3),                    # the three one-modality mixtures
    "batch_size.py": ("batches=8+16,tokens=4096,sde=false+true,ref_batch=8,ref_tokens=4096", 3),
}


def _shrink(cfg):
    """The study's config at the tiny CPU size: keeps what the study varies (schedule, mixture,
    batch, SDE), replaces the model, vocabulary and run length."""
    t = get_config("tiny")
    for key in ("model", "token_space"):
        cfg[key] = t[key]
    cfg.data.update(seq_len=t.data.seq_len, source="synthetic")
    cfg.data.synthetic = t.data.synthetic
    cfg.train.update(total_tokens=3 * cfg.train.physical_batch * t.data.seq_len,
                     micro_batch=min(cfg.train.micro_batch, cfg.train.physical_batch // 2) or 0)
    if cfg.sde.enabled:
        cfg.sde.ref_tokens = cfg.train.total_tokens
    cfg.eval.update(every=0, num_t=4, num_examples=24, batch_size=8, at_start=True)
    cfg.checkpoint.enabled = False
    cfg.logging.update(progress=False, every_steps=1)
    return cfg


@pytest.mark.slow
def test_every_study_run_evaluates_every_modality_the_same_way(repo_root, tmp_path):
    evals = {}
    for fname, (arg, n) in STUDIES.items():
        mod = load_module(os.path.join(repo_root, "experiments", fname))
        sw = get_sweep(mod, arg)
        for point in sw.points[:n]:
            cfg = _shrink(resolve(mod, point))
            run_dir = tmp_path / sw.name / point.name
            assert train(cfg, str(run_dir))["status"] == "done", point.name
            recs, torn = rc.read_jsonl(str(run_dir / rc.EVAL_FILE))
            assert torn == 0 and [r["step"] for r in recs] == [0, 3]
            evals[f"{sw.name}/{point.name}"] = recs
    assert len(evals) == 9
    first = next(iter(evals.values()))[0]
    for name, recs in evals.items():
        for r in recs:
            for m in MODS:   # every modality, also for one-modality mixtures
                assert np.isfinite(r[f"bits_{m}"]) and r[f"count_{m}"] > 0, (name, m)
            for key in ("eval_scheme", "eval_num_t", "eval_set", "eval_rows"):
                assert r[key] == first[key], (name, key, r[key], first[key])
            assert r["eval_rows"] == {"text": 8, "image": 8, "audio": 8}
        # every run starts from the same initial model (same seed and size): its step-0 eval is
        # the same number whatever the schedule, mixture or batch it is about to train with
        for m in MODS:
            assert recs[0][f"bits_{m}"] == pytest.approx(first[f"bits_{m}"], rel=1e-5), (name, m)


@pytest.mark.slow
def test_cosine_with_complementary_pairs_trains_500_steps(tmp_path, tiny_config):
    """alpha = 1 - cos(...) cancelled near t = 1 and made the complement weight inf (NaN
    gradient within ~100 steps); the stable form trains to the end. Also checks the token
    convention: `tokens` counts distinct data (each row once), `flops` the compute (both masks)."""
    c = tiny_config
    c.objective.schedule.update(text="cosine", image="cosine", audio="cosine")
    c.objective.update(complementary=True, t_min=0.0, cond_dropout=0.1)
    c.train.total_tokens = 500 * c.train.physical_batch * c.data.seq_len
    c.eval.update(every=0, at_start=False, num_examples=24)
    c.checkpoint.enabled = False
    c.logging.every_steps = 50
    run_dir = tmp_path / "cos-comp"
    summary = train(c, str(run_dir))
    assert summary["status"] == "done" and summary["steps"] == 500
    metrics, _ = rc.read_jsonl(str(run_dir / rc.METRICS_FILE))
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in metrics)
    assert metrics[-1]["loss"] < 0.7 * metrics[0]["loss"]
    cfg = json.loads((run_dir / rc.CONFIG_FILE).read_text())["resolved"]
    B, L = c.train.physical_batch, c.data.seq_len
    assert cfg["tokens_per_step"] == B * L and cfg["data_tokens_per_step"] == B * L // 2
    assert cfg["examples_per_step"] == B // 2 and "distinct" in cfg["token_convention"]
    last = metrics[-1]
    assert last["tokens"] == 500 * B * L // 2 and last["tokens_processed"] == 500 * B * L
    assert last["flops"] == pytest.approx(last["tokens_processed"] * cfg["flops_per_token"])
    assert sum(last[f"tokens_{m}"] for m in MODS) <= last["tokens"]
    assert summary["tokens"] == last["tokens"]
