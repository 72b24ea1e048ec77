"""Configs: presets build and validate; impossible values are rejected naming the field."""
import subprocess
import sys

import pytest

from experiments.base import get_config
from mdm.config_validation import ConfigError, validate_config


@pytest.mark.parametrize("preset", ["tiny", "small", "default"])
def test_presets_validate(preset):
    validate_config(get_config(preset))


@pytest.mark.parametrize("field,value,message", [
    ("model.width", 0, "config.model.width"),
    ("model.num_heads", 3, "config.model.num_heads: width 64 is not divisible"),
    ("model.dtype", "float8", "config.model.dtype"),
    ("objective.schedule.image", "exp", "config.objective.schedule.image"),
    ("objective.cond_dropout", 1.5, "config.objective.cond_dropout"),
    ("data.source", "web", "config.data.source"),
    ("train.micro_batch", 5, "config.train.micro_batch: must divide"),
    ("train.total_tokens", 10.0, "config.train.total_tokens"),
    ("optimizer.beta2", 1.0, "config.optimizer.beta2"),
    ("optimizer.decay", "linear", "config.optimizer.decay"),
    ("optimizer.warmup", 1e12, "config.optimizer.warmup"),
    ("eval.num_examples", 1, "config.eval.num_examples"),
])
def test_bad_values_name_the_field(field, value, message):
    c = get_config("tiny")
    node = c
    *path, last = field.split(".")
    for p in path:
        node = node[p]
    node[last] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate_config(c)


def test_mixture_must_sum_to_one():
    c = get_config("tiny")
    c.data.mixture.text = 0.9
    with pytest.raises(ConfigError, match="config.data.mixture: ratios must sum to 1"):
        validate_config(c)


def test_cli_rejects_a_bad_override_before_training(repo_root, tmp_path):
    cmd = [sys.executable, "-m", "mdm.train", "--config", "experiments/base.py:tiny",
           "--workdir", str(tmp_path / "r"), "--config.model.num_heads=3"]
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "config.model.num_heads" in p.stderr
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    cmd[-1] = "--config.model.no_such_field=1"
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "no_such_field" in p.stderr


def test_study_must_be_a_known_study():
    from mdm.run_contract import STUDIES
    c = get_config("tiny")
    assert c.study == ""                             # a run by hand belongs to no study
    for s in STUDIES:
        c.study = s
        validate_config(c)
    c.study = "scalling"
    with pytest.raises(ConfigError) as e:
        validate_config(c)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("config.study: unknown study 'scalling'; known: scaling, isoflop")
    # the sampling study's entry point checks it too
    from experiments.sampling import get_config as sampling_config
    from mdm.generation_tasks import validate_sampling
    s = sampling_config("checkpoint=/some/run")
    assert s.study == "sampling"
    s.study = "sampler"
    with pytest.raises(ConfigError, match="config.study: unknown study 'sampler'"):
        validate_sampling(s)
