"""WSD cooldown branches (mdm.cooldown): a branch is the run a separate job of its budget trains,
it is an ordinary run directory, and a restarted parent finishes the branches it owes."""
import json
import os
import shutil

import pytest

from experiments.base import get_config
from mdm import run_contract as rc
from mdm.config_validation import ConfigError, validate_config
from mdm.trainer import train

STEP_TOKENS = 64 * 16          # the tiny preset: 16 sequences of 64 tokens per step


def _cfg(total_steps: int, cooldown_steps: tuple[int, ...] = ()) -> object:
    c = get_config("tiny")
    c.train.total_tokens = float(total_steps * STEP_TOKENS)
    c.train.cooldowns = tuple(float(s * STEP_TOKENS) for s in cooldown_steps)
    # the warmup in tokens, so that the run of a smaller budget has the same warmup
    c.optimizer.update(decay="wsd", decay_fraction=0.25, warmup=4.0 * STEP_TOKENS,
                       min_lr_ratio=0.0)
    c.eval.update(every=0.0, at_start=False, num_examples=32)
    c.checkpoint.update(every=0.0, keep=1, permanent=())
    c.logging.update(every_steps=4, progress=False)
    return c


def _final(run_dir) -> dict:
    with open(os.path.join(run_dir, rc.SUMMARY_FILE)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One parent of 40 steps with a branch at 24 steps (branching at step 18), trained once."""
    root = tmp_path_factory.mktemp("cooldown")
    parent = root / "sweep" / "p"
    s = train(_cfg(40, cooldown_steps=(24,)), str(parent), progress=False)
    return root, parent, root / "sweep" / "p-cd2.46e04", s      # 24 x 1024 tokens


def test_a_branch_is_the_run_of_its_budget_and_a_plain_run_directory(trained, tmp_path):
    _, parent, branch, s = trained
    assert s["status"] == "done" and s["steps"] == 40
    b = _final(branch)
    assert b["status"] == "done" and b["steps"] == 24 and (branch / rc.DONE_FILE).exists()
    cfg = json.loads((branch / rc.CONFIG_FILE).read_text())
    assert cfg["config"]["branch"] == {"parent": "p", "step": 18}   # (1 - 0.25) x 24
    assert cfg["config"]["train"]["total_tokens"] == 24 * STEP_TOKENS
    # the same budget trained as its own run from scratch: the same model, bit for bit
    alone = train(_cfg(24), str(tmp_path / "alone" / "a"), progress=False)
    for m, v in alone["final_eval"].items():
        assert b["final_eval"][m]["nats"] == pytest.approx(v["nats"], rel=1e-5, abs=1e-6)
    # and it is not the parent's model at the branch step (the cooldown did something)
    assert b["final_eval"]["text"]["nats"] != pytest.approx(s["final_eval"]["text"]["nats"],
                                                           rel=1e-4)


def test_a_restarted_parent_trains_the_branches_it_owes(trained, tmp_path):
    root, parent0, branch0, first = trained
    before = _final(branch0)["final_eval"]
    # a copy of the finished parent that lost its branch and its end (as if killed after its
    # last checkpoint): the restarted parent first trains the branch again, from step 18
    parent = tmp_path / "sweep" / "p"
    shutil.copytree(parent0, parent)
    (parent / rc.DONE_FILE).unlink()
    (parent / rc.SUMMARY_FILE).unlink()
    branch = tmp_path / "sweep" / branch0.name
    again = train(_cfg(40, cooldown_steps=(24,)), str(parent), progress=False)
    assert again["status"] == "done" and _final(branch)["status"] == "done"
    for m, v in before.items():
        assert _final(branch)["final_eval"][m]["nats"] == pytest.approx(v["nats"], rel=1e-5)
    assert again["final_eval"]["text"]["nats"] == pytest.approx(
        first["final_eval"]["text"]["nats"], rel=1e-5)


@pytest.mark.parametrize("change,needle", [
    (dict(decay="cosine"), "optimizer.decay='wsd'"),
    (dict(cooldowns=(40.0 * STEP_TOKENS,)), "below train.total_tokens"),
    (dict(cooldowns=(2.0 * STEP_TOKENS,)), "before the warmup ends"),
    (dict(sde=True), "sde.enabled"),
])
def test_bad_cooldowns_are_one_clear_config_error(change, needle):
    c = _cfg(40, cooldown_steps=(24,))
    if "decay" in change:
        c.optimizer.decay = change["decay"]
    if "cooldowns" in change:
        c.train.cooldowns = change["cooldowns"]
    if "sde" in change:
        c.sde.enabled = True
        c.sde.ref_tokens = c.train.total_tokens
    with pytest.raises(ConfigError, match="config.train.cooldowns") as e:
        validate_config(c)
    assert needle in str(e.value)
