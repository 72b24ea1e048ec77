"""Bad input is one line and an exit code, never a traceback (mdm.train's exit codes): every bad
command line, config, path and token shard stops `python -m mdm.train` (and mdm.plan,
mdm.eval_samples) before anything is written, with `error: <field or file>: ...` on stderr and
exit 2 (command line / config) or 65 (token shards). The cases live in launch/bad_inputs.py
(the fault campaign runs them too)."""
import json
import os
import shutil

import pytest

from launch.bad_inputs import (MIX, SHARDS, SPACE, TINY, TRAIN_CASES, L, _edit_manifest, _rows,
                               build_bad_inputs, one_line_problem, run, run_case)
from mdm.cli_flags import EXIT_BAD_DATA, EXIT_BAD_INPUT
from mdm.data.shards import ShardError, open_array, write_sequences
from mdm.data.source import ShardSource


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_bad_inputs(tmp_path_factory.mktemp("bad_input"))


def _assert_one_line(p, code, expect):
    problem = one_line_problem(p, code, expect)
    assert not problem, problem


@pytest.fixture(scope="module")
def train_results(data, repo_root, tmp_path_factory):
    """Every TRAIN_CASES entry through `python -m mdm.train`, two at a time (each is a process
    start): {case id: '' or the problem}."""
    from concurrent.futures import ThreadPoolExecutor
    root = tmp_path_factory.mktemp("bad_input_runs")
    with ThreadPoolExecutor(2) as pool:
        futures = {c[0]: pool.submit(run_case, c, data, str(root / c[0]), repo_root)
                   for c in TRAIN_CASES}
    return {k: f.result() for k, f in futures.items()}


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input_is_one_line(case, train_results):
    problem = train_results[case[0]]
    assert not problem, problem


@pytest.mark.parametrize("module,argv,code,expect", [
    ("mdm.plan", TINY + ["--config.model.no_such=1"], EXIT_BAD_INPUT,
     "config.model.no_such: unknown field"),
    ("mdm.plan", TINY + ["--config.optimizer.lr=inf"], EXIT_BAD_INPUT,
     "config.optimizer.lr: must be a finite number"),
    ("mdm.plan", TINY + SHARDS + ["--config.data.path={truncated}"], EXIT_BAD_DATA,
     "cannot read the token array"),
    ("mdm.eval_samples", ["--config", "experiments/sampling.py", "--config.sampling.no_such=1",
                          "--workdir", "{missing}_samples"], EXIT_BAD_INPUT,
     "config.sampling.no_such: unknown field; known fields of config.sampling: "),
    ("mdm.eval_samples", ["--config", "experiments/no_such.py", "--workdir", "{missing}_samples"],
     EXIT_BAD_INPUT, "no such config file"),
], ids=["plan-unknown-field", "plan-lr-inf", "plan-truncated-chunk", "eval-samples-unknown-field",
        "eval-samples-missing-config"])
def test_other_entry_points_bad_input_is_one_line(module, argv, code, expect, data, repo_root):
    p = run(["-m", module, *[a.format(**data) for a in argv]], repo_root)
    _assert_one_line(p, code, expect)


def test_launch_cli_names_a_non_finite_field(repo_root, tmp_path):
    p = run(["-m", "launch.cli", "expand", "experiments/demo.py", "--runs-root", str(tmp_path),
              "--set", "optimizer.lr=inf"], repo_root)
    _assert_one_line(p, 2, "config.optimizer.lr: must be a finite number, got inf")


# --- in-process: the read sites and the manifest record ----------------------------------------
def test_a_chunk_that_breaks_after_load_is_a_shard_error_naming_the_file(data, tmp_path):
    d = str(tmp_path / "late")
    shutil.copytree(data["good"], d)
    src = ShardSource(d, SPACE, L, MIX)
    with open(os.path.join(d, "train", "audio", "tokens", "0.0"), "r+b") as f:
        f.truncate(50)
    with pytest.raises(ShardError, match=r"train/audio/tokens: cannot read the token array"):
        next(src.iterate(0, 2, 16))  # through grain's prefetch threads


def test_writer_records_id_range_and_unverified_loads_check_it(data, tmp_path):
    m = json.loads(open(os.path.join(data["good"], "manifest.json")).read())
    lo, hi = m["splits"]["train"]["text"]["id_range"]
    tok = open_array(os.path.join(data["good"], "train", "text", "tokens")).read().result()
    assert (lo, hi) == (int(tok.min()), int(tok.max())) and hi < SPACE.text_offset + 64
    ShardSource(data["good"], SPACE, L, MIX, verify=False)
    d = str(tmp_path / "unverified")
    shutil.copytree(data["good"], d)
    _edit_manifest(d, lambda m: m["splits"]["train"]["text"].update(id_range=[0, 1000]))
    with pytest.raises(ShardError, match="records token ids in \\[0, 1000\\] but text rows"):
        ShardSource(d, SPACE, L, MIX, verify=False)
    _edit_manifest(d, lambda m: m["splits"]["train"]["text"].update(
        id_range=[lo, hi], content_tokens={"text": 10, "image": 3, "audio": 0}))
    with pytest.raises(ShardError, match="records 3 image tokens in text rows"):
        ShardSource(d, SPACE, L, MIX, verify=False)


def test_the_writer_refuses_ids_of_another_modality(tmp_path):
    rows = _rows("text", 4, 0)
    rows.tokens[0, 1] = SPACE.image_offset + 2  # a valid token id, but not in a text row
    parts = [("train", "text", 0, lambda: rows)]
    with pytest.raises(ShardError, match="lies in the image range"):
        write_sequences(str(tmp_path / "w"), "fp-w", SPACE, L, parts)


def test_a_directory_of_another_data_set_is_refused_with_its_own_error(tmp_path):
    """The writer refuses to mix two data sets in one directory (OtherDataSet, a ShardError), so
    the demo, which owns its shard cache, can rebuild it when its data set changed."""
    from mdm.data.shards import OtherDataSet
    rows = _rows("text", 4, 1)
    write_sequences(str(tmp_path / "s"), "fp-one", SPACE, L, [("train", "text", 0, lambda: rows)])
    with pytest.raises(OtherDataSet, match="already holds a different data set"):
        write_sequences(str(tmp_path / "s"), "fp-two", SPACE, L,
                        [("train", "text", 0, lambda: rows)])
