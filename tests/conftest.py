"""Test configuration: several fake CPU devices (set before JAX is imported), fast failure of
hung CPU collectives, one persistent compilation cache for the session (this process and the
trainers it starts), absl flags parsed for grain, and shared fixtures."""
import os

_FLAGS = ("--xla_force_host_platform_device_count=8 "
          "--xla_cpu_collective_call_terminate_timeout_seconds=60")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAGS).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The trainers this session starts (subprocesses) share one compilation cache of their own
# (mdm.startup), removed at the end: programs compiled by one test are loaded by the next, and
# a test that kills a trainer mid-write never leaves a torn entry in the user's cache.
if "MDM_COMPILATION_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile
    _CACHE = tempfile.mkdtemp(prefix="mdm-test-jax-cache-")
    os.environ["MDM_COMPILATION_CACHE"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

# This process uses the same cache: the many in-process train() calls of the tiny presets build
# fresh jitted functions, and the identical programs among them (init, eval, train steps of the
# same config) are loaded instead of compiled again (about a third of the in-process CPU time).
from mdm.startup import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()  # grain workers and absl-using libraries expect parsed flags

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO


@pytest.fixture
def tiny_config():
    from experiments.base import get_config
    c = get_config("tiny")
    c.logging.progress = False
    return c


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The embedded demo data set at its 'tiny' scale (built once per test session)."""
    from mdm.demo_data.build import build_demo_dataset
    return build_demo_dataset(tmp_path_factory.mktemp("demo_tiny"), scale="tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_demo_shards(tiny_demo, tmp_path_factory):
    """Token shards of the tiny demo data set (seq_len 128)."""
    from mdm.data.tokenize import raw_from_demo, tokenize
    toks = {k: tiny_demo.tokenizer(k) for k in ("text", "image", "audio")}
    out = str(tmp_path_factory.mktemp("demo_shards"))
    tokenize(raw_from_demo(tiny_demo), toks, out, 128, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_demo_run(tiny_demo_shards, tmp_path_factory):
    """A tiny model trained for a few steps on the demo shards, with a checkpoint."""
    import json
    import os
    from experiments.base import get_config
    from mdm.trainer import train
    with open(os.path.join(tiny_demo_shards, "manifest.json")) as f:
        ts = json.load(f)["token_space"]
    c = get_config("tiny")
    c.logging.progress = False
    c.token_space.update(text_vocab=ts["text_vocab"], image_vocab=ts["image_vocab"],
                         audio_vocab=ts["audio_vocab"], pad_vocab_to=128)
    c.data.update(source="shards", path=tiny_demo_shards, seq_len=128)
    c.train.total_tokens = 16 * 128 * 8
    c.eval.update(every=0.0, num_examples=16)
    run = str(tmp_path_factory.mktemp("runs") / "demo" / "tiny")
    summary = train(c, run)
    assert summary["status"] == "done"
    return run
