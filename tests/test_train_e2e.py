"""End to end: the tiny config trains on the synthetic tri-modal source, the eval ELBO falls by a
clear margin toward the known entropy, and the run directory follows the contract."""
import json
import os

import pytest

from mdm import run_contract as rc
from mdm.trainer import train


@pytest.mark.slow
def test_tiny_run_learns_and_writes_the_contract(tiny_config, tmp_path):
    run_dir = tmp_path / "sweep" / "tiny-run"
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
    assert os.path.exists(run_dir / rc.DONE_FILE)
