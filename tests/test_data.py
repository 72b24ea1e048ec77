"""Token shards and the step-indexed grain source: determinism across restarts and process
counts, exact mixing quotas, epochs, resumable writing, corrupted / mismatched shards rejected."""
import json
import os

import numpy as np
import pytest

from mdm.data.mixing import quotas, row_modalities
from mdm.data.shards import ShardError, ShardWriter, write_sequences
from mdm.data.source import ShardSource
from mdm.data.synthetic import SyntheticSource
from mdm.token_space import Sequences, TokenSpace

SPACE = TokenSpace(64, 64, 64, 64)
L = 64
MIX = {"text": 0.5, "image": 0.3, "audio": 0.2}


def _rows(kind: str, n: int, seed: int) -> Sequences:
    src = SyntheticSource(SPACE, L, {kind: 1.0}, data_seed=seed, states=16, branching=3)
    d = src.batch(0, n)
    return Sequences(d["tokens"], d["segment_ids"], d["cond"])


def _parts(sizes=None):
    sizes = sizes or {"text": (37, 8), "image": (23, 6), "audio": (19, 6)}
    for kind, (n_train, n_eval) in sizes.items():
        for part in range(2):
            yield "train", kind, part, (lambda k=kind, p=part, n=n_train: _rows(k, n, 10 + p))
        yield "eval", kind, 0, (lambda k=kind, n=n_eval: _rows(k, n, 99))


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("shards"))
    m = write_sequences(d, "fp-1", SPACE, L, _parts(), tokenizers={"text": {"vocab_size": 64}})
    assert m["complete"] and m["splits"]["train"]["text"]["rows"] == 74
    return d


def test_quotas_are_exact_and_sum_to_the_batch():
    for B in (1, 7, 16, 100):
        q = quotas(B, MIX)
        assert sum(q.values()) == B
        for k, r in MIX.items():
            assert abs(q[k] - B * r) < 1
    assert row_modalities(10, MIX) == ["text"] * 5 + ["image"] * 3 + ["audio"] * 2


def test_batches_are_a_pure_function_of_the_step(shard_dir):
    a = ShardSource(shard_dir, SPACE, L, MIX, seed=3)
    b = ShardSource(shard_dir, SPACE, L, MIX, seed=3)          # a "restart"
    for s in (0, 5, 17):
        for f in ("tokens", "segment_ids", "cond"):
            np.testing.assert_array_equal(a.batch(s, 20)[f], b.batch(s, 20)[f])
    assert not np.array_equal(a.batch(1, 20)["tokens"], a.batch(2, 20)["tokens"])
    c = ShardSource(shard_dir, SPACE, L, MIX, seed=4)
    assert not np.array_equal(a.batch(1, 20)["tokens"], c.batch(1, 20)["tokens"])
    # grain random access by step and the prefetching iterator give the same batches
    ds = a.grain_dataset(20)
    np.testing.assert_array_equal(ds[17]["tokens"], a.batch(17, 20)["tokens"])
    it = list(a.iterate(3, 6, 20))
    np.testing.assert_array_equal(it[2]["tokens"], a.batch(5, 20)["tokens"])


@pytest.mark.parametrize("procs", [2, 4])
def test_process_slices_reassemble_the_global_batch(shard_dir, procs):
    src = ShardSource(shard_dir, SPACE, L, MIX, seed=0)
    full = src.batch(9, 20)
    parts = [src.batch(9, 20, i, procs) for i in range(procs)]
    np.testing.assert_array_equal(np.concatenate([p["tokens"] for p in parts]), full["tokens"])


def test_mixing_quota_per_batch_and_every_row_once_per_epoch(shard_dir):
    src = ShardSource(shard_dir, SPACE, L, MIX, seed=0)
    q = quotas(20, MIX)
    seen = []
    for s in range(74 // q["text"] + 1):
        tok = src.batch(s, 20)["tokens"]
        first = tok[:, 0]
        kinds = np.where(first == SPACE.special("T2I"), 1, 0) + np.where(first == SPACE.special("I2T"), 1, 0)
        aud = np.isin(first, [SPACE.special("T2S"), SPACE.special("S2T")])
        assert kinds.sum() == q["image"] and aud.sum() == q["audio"]
        seen.append(src.row_indices("text", s, q["text"], range(q["text"])))
    epoch0 = np.concatenate(seen)[:74]
    assert sorted(epoch0.tolist()) == list(range(74))


def test_eval_examples_are_fixed(shard_dir):
    a = ShardSource(shard_dir, SPACE, L, MIX).eval_examples(10)
    b = ShardSource(shard_dir, SPACE, L, MIX, seed=7).eval_examples(10)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert a["tokens"].shape == (10, L)


def _assert_same_eval_set(a, b):
    from mdm.evaluation import describe_examples
    for f in ("tokens", "segment_ids", "cond", "kind", "row"):
        np.testing.assert_array_equal(a[f], b[f])
    assert describe_examples(a) == describe_examples(b)


def test_eval_set_does_not_depend_on_the_mixture(shard_dir):
    """One eval set per data set: a text-only run, an image-only run and a mixed run evaluate
    every modality on the same rows (same kinds, row ids and hash)."""
    sets = [ShardSource(shard_dir, SPACE, L, mix).eval_examples(12)
            for mix in (MIX, {"text": 1.0}, {"image": 1.0, "audio": 0.0})]
    for other in sets[1:]:
        _assert_same_eval_set(sets[0], other)
    ev = sets[0]
    assert describe_examples_rows(ev) == {"text": 4, "image": 4, "audio": 4}
    # the rows are the eval split's first rows of each kind, in order
    assert ev["row"].tolist() == [0, 1, 2, 3] * 3
    syn = [SyntheticSource(SPACE, L, mix, states=16, branching=3).eval_examples(12)
           for mix in (MIX, {"audio": 1.0})]
    _assert_same_eval_set(*syn)
    assert describe_examples_rows(syn[0]) == {"text": 4, "image": 4, "audio": 4}
    space_mod = SPACE.modality_of(syn[0]["tokens"])
    for kind, mid in (("image", 2), ("audio", 3)):  # each kind's rows hold that modality
        assert (np.asarray(space_mod)[syn[0]["kind"] == kind] == mid).any(axis=1).all()


def describe_examples_rows(ev):
    from mdm.evaluation import describe_examples
    return describe_examples(ev)["eval_rows"]


def test_mismatched_config_and_corruption_are_rejected(shard_dir, tmp_path):
    with pytest.raises(ShardError, match="config.data.seq_len is 32"):
        ShardSource(shard_dir, SPACE, 32, MIX)
    with pytest.raises(ShardError, match="config.token_space.image_vocab is 100"):
        ShardSource(shard_dir, TokenSpace(64, 100, 64, 64), L, MIX)
    import shutil
    bad = str(tmp_path / "bad")
    shutil.copytree(shard_dir, bad)
    from mdm.data.shards import open_array, write_array
    arr = open_array(os.path.join(bad, "train", "image", "tokens")).read().result()
    arr[3, 5] += 1
    write_array(os.path.join(bad, "train", "image", "tokens"), arr)
    with pytest.raises(ShardError, match="checksum mismatch"):
        ShardSource(bad, SPACE, L, MIX)
    with pytest.raises(ShardError, match="missing manifest.json"):
        ShardSource(str(tmp_path / "nothing"), SPACE, L, MIX)
    with pytest.raises(ShardError, match="has no audio rows"):
        m = json.loads(open(os.path.join(bad, "manifest.json")).read())
        del m["splits"]["train"]["audio"]
        open(os.path.join(bad, "manifest.json"), "w").write(json.dumps(m))
        ShardSource(bad, SPACE, L, MIX, verify=False)


def test_writing_resumes_and_refuses_another_data_set(tmp_path):
    d = str(tmp_path / "resume")
    calls = []

    def parts(fail_at=None):
        for i, (split, kind, part, make) in enumerate(_parts()):
            def wrapped(make=make, i=i):
                if i == fail_at:
                    raise KeyboardInterrupt  # killed half-way
                calls.append(i)
                return make()
            yield split, kind, part, wrapped

    with pytest.raises(KeyboardInterrupt):
        write_sequences(d, "fp-r", SPACE, L, parts(fail_at=4))
    with pytest.raises(ShardError, match="did not finish"):
        ShardSource(d, SPACE, L, MIX)
    assert calls == [0, 1, 2, 3]
    m = write_sequences(d, "fp-r", SPACE, L, parts())
    assert calls == [0, 1, 2, 3, 4, 5, 6, 7, 8]          # finished parts were not redone
    assert m["complete"]
    ShardSource(d, SPACE, L, MIX)
    with pytest.raises(ShardError, match="already holds a different data set"):
        ShardWriter(d, "fp-other", SPACE, L)
    with pytest.raises(Exception, match="MASK"):
        bad = _rows("text", 3, 0)
        bad.tokens[0, 0] = SPACE.mask
        ShardWriter(str(tmp_path / "x"), "fp-x", SPACE, L).write_part("train", "text", 0, bad)


def test_trainer_reads_token_shards(shard_dir, tmp_path, tiny_config):
    from mdm import run_contract as rc
    from mdm.trainer import train
    c = tiny_config
    c.data.update(source="shards", path=shard_dir)
    c.data.mixture.update(text=0.5, image=0.25, audio=0.25)
    c.train.total_tokens = 16 * 64 * 6
    c.eval.update(every=0.0, num_examples=16)
    c.checkpoint.enabled = False
    s = train(c, str(tmp_path / "run"))
    assert s["status"] == "done" and s["steps"] == 6
    cfg = json.loads((tmp_path / "run" / rc.CONFIG_FILE).read_text())
    assert cfg["resolved"]["data"]["fingerprint"] == "fp-1"
    assert set(s["final_eval"]) == {"text", "image", "audio"}
