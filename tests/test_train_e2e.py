"""End to end: the tiny config trains on the synthetic tri-modal source, the eval ELBO falls by a
clear margin toward the known entropy, and the run directory follows the contract."""
import json
import os

import numpy as np
import pytest

from mdm import run_contract as rc
from mdm.trainer import train


@pytest.mark.slow
def test_tiny_run_learns_and_writes_the_contract(tiny_config, tmp_path):
    run_dir = tmp_path / "sweep" / "tiny-run"
    tiny_config.study = "scaling"
    summary = train(tiny_config, str(run_dir))
    assert summary["status"] == "done"
    rc.validate_run_dir(str(run_dir))
    evals, torn = rc.read_jsonl(str(run_dir / rc.EVAL_FILE))
    assert torn == 0 and evals[0]["step"] == 0 and evals[-1]["step"] == 300
    cfg = json.loads((run_dir / rc.CONFIG_FILE).read_text())
    entropy = cfg["resolved"]["data"]["entropy_rate_nats"]
    for m in ("text", "image", "audio"):
        first, last = evals[0][f"nats_{m}"], evals[-1][f"nats_{m}"]
        assert last < 0.5 * first, (m, first, last)                 # a clear fall
        # an ELBO cannot beat the data's entropy (up to its standard error)
        assert last > entropy[m] - 3 * evals[-1][f"nats_se_{m}"], (m, last, entropy[m])
        assert summary["final_eval"][m]["nats"] == last
        assert abs(evals[-1][f"bits_{m}"] * 0.6931471805599453 - last) < 1e-9
    metrics, _ = rc.read_jsonl(str(run_dir / rc.METRICS_FILE))
    assert [r["step"] for r in metrics] == list(range(10, 301, 10))
    last = metrics[-1]
    assert last["tokens"] == 300 * 16 * 64
    assert last["flops"] == pytest.approx(last["tokens"] * cfg["resolved"]["flops_per_token"])
    assert sum(last[f"tokens_{m}"] for m in ("text", "image", "audio")) < last["tokens"]
    assert 0 < last["mfu"] < 1 and last["lr"] > 0
    assert cfg["resolved"]["params_total"] == summary["params_total"]
    assert cfg["run_id"] == "tiny-run" and cfg["sweep"] == "sweep"
    assert cfg["study"] == cfg["config"]["study"] == "scaling"      # what the analysis groups by
    assert os.path.exists(run_dir / rc.DONE_FILE)


@pytest.mark.slow
def test_gradient_noise_components_of_every_step_reach_the_metrics(tiny_config, tmp_path):
    """With logging every 4 steps, each record's gns_trace / gns_grad_sq are the means of the
    per-step components over the steps since the previous record (gns_steps of them; the
    run logged every step gives those per-step values), so no step is dropped, and
    gns_b_noise_tokens is the ratio of the window means."""
    import copy

    def run(every: int) -> list[dict]:
        c = copy.deepcopy(tiny_config)
        c.train.update(micro_batch=4, max_steps=9)                  # 4 micro-batches of 4 rows
        c.logging.update(grad_noise_scale=True, every_steps=every)
        c.eval.at_start = False
        c.checkpoint.enabled = False
        run_dir = tmp_path / f"every{every}"
        train(c, str(run_dir))
        return rc.read_jsonl(str(run_dir / rc.METRICS_FILE))[0]

    per_step, windows = run(1), run(4)
    assert [r["step"] for r in per_step] == list(range(1, 10))
    assert all(r["gns_steps"] == 1 for r in per_step)
    assert [(r["step"], r["gns_steps"]) for r in windows] == [(4, 4), (8, 4), (9, 1)]
    for r in windows:
        steps = per_step[r["step"] - r["gns_steps"]:r["step"]]
        for key in ("gns_trace", "gns_grad_sq"):   # the same program twice: same values
            assert r[key] == pytest.approx(np.mean([x[key] for x in steps]), rel=1e-6)
        assert r["gns_b_noise_tokens"] == pytest.approx(r["gns_trace"] / r["gns_grad_sq"])
