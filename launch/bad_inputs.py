"""Every bad input the trainer must refuse with one line and an exit code (2 for the command
line and config, 65 for token shards), and the data to provoke them: shared by
tests/test_bad_input.py and the fault campaign (launch/fault_campaign.py).

    data = build_bad_inputs(root)        # good shards, broken copies, broken experiment files
    for case in TRAIN_CASES:
        ok, why = run_case(case, data, workdir)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from mdm.cli_flags import EXIT_BAD_DATA, EXIT_BAD_INPUT
from mdm.data.shards import checksum, open_array, write_array, write_sequences
from mdm.data.synthetic import SyntheticSource
from mdm.token_space import Sequences, TokenSpace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPACE = TokenSpace(64, 64, 64, 64)  # experiments/base.py:tiny's token space
L = 64                              # and seq_len
MIX = {"text": 0.5, "image": 0.25, "audio": 0.25}
# Short runs with nothing slow at start, so that a bad input the old code let through ends fast.
QUICK = ["--config.train.max_steps=2", "--config.checkpoint.enabled=False",
         "--config.eval.at_start=False", "--config.eval.every=0", "--noprogress"]


def _rows(kind: str, n: int, seed: int) -> Sequences:
    d = SyntheticSource(SPACE, L, {kind: 1.0}, data_seed=seed, states=16, branching=3).batch(0, n)
    return Sequences(d["tokens"], d["segment_ids"], d["cond"])


def _write_good(d: str) -> None:
    parts = [(split, kind, 0, (lambda k=kind, n=n, s=seed: _rows(k, n, s)))
             for split, n, seed in (("train", 32, 1), ("eval", 16, 2))
             for kind in ("text", "image", "audio")]
    write_sequences(d, "fp-bad-input", SPACE, L, parts)


def _set_token(d: str, kind: str, value: int) -> None:
    """Put `value` into a train row of `kind` and fix the manifest's checksum, as a buggy
    tokenizer (or a hand-edited shard) would: only the id check can catch it."""
    p = os.path.join(d, "train", kind, "tokens")
    a = open_array(p).read().result()
    a[0, 1] = value
    write_array(p, a)
    _edit_manifest(d, lambda m: m["splits"]["train"][kind]["checksums"].update(tokens=checksum(a)))


def _edit_manifest(d: str, fn) -> None:
    p = os.path.join(d, "manifest.json")
    m = json.loads(open(p).read())
    fn(m)
    open(p, "w").write(json.dumps(m))


def build_bad_inputs(root: Any) -> dict[str, str]:
    """{name: path}: good shards, broken copies of them, and broken experiment files."""
    from pathlib import Path
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    good = str(root / "good")
    _write_good(good)
    out = {"good": good, "missing": str(root / "no_such_dir")}

    def copy(name):
        out[name] = str(root / name)
        shutil.copytree(good, out[name])
        return out[name]

    with open(os.path.join(copy("truncated"), "train", "image", "tokens", "0.0"), "r+b") as f:
        f.truncate(100)                                           # a chunk cut short
    _set_token(copy("id_outside_space"), "text", 1000)           # beyond the whole vocabulary
    _set_token(copy("text_id_beyond_vocab"), "text", SPACE.text_offset + SPACE.text_vocab + 3)
    _set_token(copy("image_row_audio_id"), "image", SPACE.audio_offset + 1)
    _edit_manifest(copy("unfinished"), lambda m: m.update(complete=False))
    _edit_manifest(copy("no_checksums"), lambda m: m["splits"]["train"]["text"].pop("checksums"))
    _edit_manifest(copy("no_audio"), lambda m: m["splits"]["train"].pop("audio"))
    with open(os.path.join(copy("bad_manifest"), "manifest.json"), "w") as f:
        f.write('{"format": "mdm-token-shards", "vers')          # truncated JSON
    exp = root / "exp"
    exp.mkdir()
    for name, line in (("mixture_video", "c.data.mixture.video = 0.1"),
                       ("model_typo", "c.model.widht = 128"),
                       ("lr_none", "c.optimizer.lr = None"),
                       ("raises", "raise KeyError('boom')")):
        (exp / f"{name}.py").write_text(
            "from experiments.base import get_config as base\n\n\n"
            f"def get_config(arg=None):\n    c = base('tiny')\n    {line}\n    return c\n")
        out[f"exp_{name}"] = str(exp / f"{name}.py")
    return out


TINY = ["--config", "experiments/base.py:tiny"]
SHARDS = ["--config.data.source=shards"]

# (id, argv after `python -m mdm.train` (workdir added), {data key} substitutions, exit code,
#  text the one stderr line must contain)
TRAIN_CASES = [
    # the command line
    ("unknown-field", TINY + ["--config.model.no_such=1"], EXIT_BAD_INPUT,
     "config.model.no_such: unknown field; known fields of config.model: "),
    ("unknown-section", TINY + ["--config.nope.x=1"], EXIT_BAD_INPUT,
     "config.nope: unknown field; known fields of config: "),
    ("field-is-not-a-section", TINY + ["--config.optimizer.lr.x=1"], EXIT_BAD_INPUT,
     "config.optimizer.lr.x: unknown field; config.optimizer.lr is a float"),
    ("unknown-mixture-key-flag", TINY + ["--config.data.mixture.video=0.1"], EXIT_BAD_INPUT,
     "config.data.mixture.video: unknown field; known fields of config.data.mixture: "),
    ("wrong-type", TINY + ["--config.model.width=abc"], EXIT_BAD_INPUT,
     "--config.model.width=abc"),
    ("unknown-flag", TINY + ["--bogus=1"], EXIT_BAD_INPUT, "bogus"),
    ("missing-config-file", ["--config", "experiments/no_such.py:tiny"], EXIT_BAD_INPUT,
     "no such config file 'experiments/no_such.py'"),
    ("unknown-preset", ["--config", "experiments/base.py:tinyx"], EXIT_BAD_INPUT,
     "unknown preset 'tinyx'"),
    ("get-config-raises", ["--config", "{exp_raises}"], EXIT_BAD_INPUT, "KeyError: 'boom'"),
    ("no-workdir", TINY, EXIT_BAD_INPUT, "--workdir DIR is required"),
    # the config file
    ("unknown-mixture-key-file", ["--config", "{exp_mixture_video}"], EXIT_BAD_INPUT,
     "config.data.mixture.video: unknown field"),
    ("model-field-typo-file", ["--config", "{exp_model_typo}"], EXIT_BAD_INPUT,
     "config.model.widht: unknown field"),
    ("lr-none-file", ["--config", "{exp_lr_none}"], EXIT_BAD_INPUT,
     "config.optimizer.lr: must be a number, got None"),
    # numbers: non-finite, absurd, out of range
    ("lr-inf", TINY + ["--config.optimizer.lr=inf"], EXIT_BAD_INPUT,
     "config.optimizer.lr: must be a finite number, got inf"),
    ("lr-nan", TINY + ["--config.optimizer.lr=nan"], EXIT_BAD_INPUT,
     "config.optimizer.lr: must be a finite number, got nan"),
    ("lr-absurd", TINY + ["--config.optimizer.lr=100"], EXIT_BAD_INPUT,
     "config.optimizer.lr: must be in (0, 10.0]"),
    ("lr-negative", TINY + ["--config.optimizer.lr=-0.001"], EXIT_BAD_INPUT,
     "config.optimizer.lr: must be in (0, 10.0]"),
    ("warmup-negative", TINY + ["--config.optimizer.warmup=-0.1"], EXIT_BAD_INPUT,
     "config.optimizer.warmup: must be >= 0"),
    ("weight-decay-negative", TINY + ["--config.optimizer.weight_decay=-1"], EXIT_BAD_INPUT,
     "config.optimizer.weight_decay: must be >= 0"),
    ("lr-times-weight-decay", TINY + ["--config.optimizer.weight_decay=1000"], EXIT_BAD_INPUT,
     "config.optimizer.weight_decay: lr x weight_decay"),
    ("eps-zero", TINY + ["--config.optimizer.eps=0"], EXIT_BAD_INPUT, "config.optimizer.eps"),
    ("beta1-nan", TINY + ["--config.optimizer.beta1=nan"], EXIT_BAD_INPUT,
     "config.optimizer.beta1: must be a finite number"),
    ("grad-clip-inf", TINY + ["--config.optimizer.grad_clip=inf"], EXIT_BAD_INPUT,
     "config.optimizer.grad_clip: must be a finite number"),
    ("total-tokens-inf", TINY + ["--config.train.total_tokens=inf"], EXIT_BAD_INPUT,
     "config.train.total_tokens: must be a finite number"),
    ("t-min-nan", TINY + ["--config.objective.t_min=nan"], EXIT_BAD_INPUT,
     "config.objective.t_min: must be a finite number"),
    ("max-steps-negative", TINY + ["--config.train.max_steps=-1"], EXIT_BAD_INPUT,
     "config.train.max_steps: must be >= 0"),
    ("pad-vocab-zero", TINY + ["--config.token_space.pad_vocab_to=0"], EXIT_BAD_INPUT,
     "config.token_space.pad_vocab_to: must be >= 1"),
    # paths and token shards
    ("missing-shards-path", TINY + SHARDS + ["--config.data.path={missing}"], EXIT_BAD_DATA,
     "config.data.path: no token shards at {missing}"),
    ("seq-len-mismatch", TINY + SHARDS + ["--config.data.path={good}", "--config.data.seq_len=32"],
     EXIT_BAD_DATA, "shards have seq_len 64 but config.data.seq_len is 32"),
    ("vocab-mismatch", TINY + SHARDS + ["--config.data.path={good}",
                                        "--config.token_space.image_vocab=100"],
     EXIT_BAD_DATA, "image_vocab 64 but config.token_space.image_vocab is 100"),
    ("truncated-chunk", TINY + SHARDS + ["--config.data.path={truncated}"], EXIT_BAD_DATA,
     "{truncated}/train/image/tokens: cannot read the token array"),
    ("id-outside-token-space", TINY + SHARDS + ["--config.data.path={id_outside_space}"],
     EXIT_BAD_DATA, "{id_outside_space}/train/text/tokens: row 0 position 1: token id 1000 is "
     "outside the token space [0, 208)"),
    ("text-id-beyond-text-vocab", TINY + SHARDS + ["--config.data.path={text_id_beyond_vocab}"],
     EXIT_BAD_DATA, "token id 83 lies in the image range [80, 144) but text rows hold only text"),
    ("audio-id-in-image-row", TINY + SHARDS + ["--config.data.path={image_row_audio_id}"],
     EXIT_BAD_DATA, "lies in the audio range [144, 208) but image rows hold only text + image"),
    ("unfinished-tokenization", TINY + SHARDS + ["--config.data.path={unfinished}"],
     EXIT_BAD_DATA, "tokenization did not finish"),
    ("corrupt-manifest", TINY + SHARDS + ["--config.data.path={bad_manifest}"], EXIT_BAD_DATA,
     "{bad_manifest}/manifest.json is not valid JSON"),
    ("manifest-missing-field", TINY + SHARDS + ["--config.data.path={no_checksums}"],
     EXIT_BAD_DATA, "{no_checksums}/manifest.json: splits.train.text lacks rows or checksums"),
    ("mixture-modality-not-in-shards", TINY + SHARDS + ["--config.data.path={no_audio}"],
     EXIT_BAD_DATA, "config.data.mixture.audio = 0.25 but {no_audio} has no audio rows"),
]


def run(argv: list[str], repo_root: str = REPO, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=repo_root, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *argv], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_line_problem(p: subprocess.CompletedProcess, code: int, expect: str) -> str:
    """'' when `p` failed as it should (exit `code`, one `error: ...` line containing `expect`,
    no traceback); otherwise what went wrong."""
    err = p.stderr.strip()
    if "Traceback" in p.stderr:
        return "a traceback: " + p.stderr[-1500:]
    if p.returncode != code:
        return f"exit {p.returncode}, expected {code}: {p.stderr[-1500:]}"
    if len(err.splitlines()) != 1 or not err.startswith("error: ") or expect not in err:
        return f"not one line naming {expect!r}: {err[-1500:]}"
    return ""


def run_case(case: tuple, data: dict[str, str], workdir: str, repo_root: str = REPO) -> str:
    """Run one TRAIN_CASES entry through `python -m mdm.train`; '' when it is refused as it
    should be (and nothing was written), else the problem."""
    _, argv, code, expect = case
    argv = [a.format(**data) for a in argv]
    if "--workdir DIR is required" not in expect:
        argv += ["--workdir", workdir]
    quick = [q for q in QUICK if q.split("=")[0] not in {a.split("=")[0] for a in argv}]
    p = run(["-m", "mdm.train", *argv, *quick], repo_root)
    problem = one_line_problem(p, code, expect.format(**data))
    if not problem and os.path.exists(os.path.join(workdir, "config.json")):
        problem = "config.json was written before the input was refused"
    return problem
