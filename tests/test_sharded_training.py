"""The sharded trainer: mesh equivalence, real parameter sharding, resume (same and different
mesh), SIGTERM preemption, NaN stop, two processes with jax.distributed, and `plan`."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments.base import get_config
from mdm import run_contract as rc
from mdm.optim import lr_schedule, make_optimizer
from mdm.sharding import MeshError, make_mesh, mesh_from_config, resolve_mesh_shape, rules_from_config
from mdm.train_state import create_state
from mdm.assemble import build
from mdm.trainer import train


def short_config(steps: int = 12):
    c = get_config("tiny")
    c.train.total_tokens = 16 * 64 * steps
    c.logging.update(every_steps=2, progress=False)
    c.eval.update(every=0.0, num_examples=16)
    c.checkpoint.enabled = False
    return c


def losses(run_dir) -> list[float]:
    return [r["loss"] for r in rc.read_jsonl(os.path.join(run_dir, rc.METRICS_FILE))[0]]


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-4), ("bfloat16", 4e-3)])
def test_one_device_and_a_2x2x2_mesh_give_the_same_losses(tmp_path, dtype, rtol):
    """float32: the sharded program computes the same function (reduction order only). bf16
    (the default): activations are rounded to 8 mantissa bits, so a different summation order
    can flip a rounding (relative 2^-8 on a value); the losses agree to a few 1e-3."""
    c1 = short_config()
    c1.mesh.data = 1
    c1.model.dtype = dtype
    train(c1, str(tmp_path / "one"), devices=jax.devices()[:1])
    c8 = short_config()
    c8.mesh.update(data=2, fsdp=2, tensor=2)
    c8.model.dtype = dtype
    train(c8, str(tmp_path / "eight"))
    a, b = losses(tmp_path / "one"), losses(tmp_path / "eight")
    assert len(a) == 6
    np.testing.assert_allclose(a, b, rtol=rtol)
    cfg = json.loads((tmp_path / "eight" / rc.CONFIG_FILE).read_text())
    assert cfg["resolved"]["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}


def test_parameters_are_sharded_as_the_rules_say():
    c = get_config("tiny")
    c.mesh.update(data=2, fsdp=2, tensor=2)
    c.model.scan_layers = True                            # a stacked 'layers' axis, unsharded
    b = build(c)
    mesh = mesh_from_config(c)
    rules = rules_from_config(c)
    tx = make_optimizer(b.model_cfg, lr_schedule(1e-3, 1e6, 1024, 0.1), 0.9, 0.95, 1e-8, 0.0, 1.0)
    state, _ = create_state(b.model, tx, mesh, rules, 64, jax.random.PRNGKey(0))
    p = state.params
    assert p["embedding"].sharding.spec == P("tensor", "fsdp")
    assert p["head"].sharding.spec == P("fsdp", "tensor")
    q = p["layers"]["attn"]["query"]                      # [layers, embed, heads, kv]
    assert q.sharding.spec == P(None, "fsdp", "tensor", None)
    assert q.addressable_shards[0].data.shape == (2, 32, 2, 16)   # really split 4 ways
    wo = p["layers"]["mlp"]["wo"]["kernel"]
    assert wo.sharding.spec == P(None, "tensor", "fsdp")
    # Adam moments follow their parameters; the step counter is replicated
    import optax
    mu = optax.tree_utils.tree_get(state.opt_state, "mu")["layers"]["attn"]["query"]
    assert mu.sharding.spec == q.sharding.spec
    assert state.step.sharding.spec == P()
    c.model.scan_layers = False                           # unrolled: one tree per layer
    state, _ = create_state(build(c).model, tx, mesh, rules, 64, jax.random.PRNGKey(0))
    assert state.params["layer_1"]["attn"]["query"].sharding.spec == P("fsdp", "tensor", None)


def test_completep_per_group_adam_moments_follow_their_parameters():
    """Under CompleteP each parameter group has its own Adam inside optax.multi_transform (the
    other groups' slots are MaskedNode holes): every moment must still take its parameter's
    sharding, and the per-group step counters stay replicated."""
    import optax
    c = get_config("tiny")
    c.model.update(parameterization="completep", base_width=32, base_depth=1)
    c.mesh.update(data=2, fsdp=2, tensor=2)
    b = build(c)
    from mdm.assemble import setup_train_step
    st = setup_train_step(c, b, mesh_from_config(c), rules_from_config(c))
    state, _ = create_state(b.model, st.tx, mesh_from_config(c), rules_from_config(c), 64,
                            jax.random.PRNGKey(0))
    checked = 0
    for name in ("mu", "nu"):
        for moments in optax.tree_utils.tree_get_all_with_path(state.opt_state, name):
            flat_m = jax.tree_util.tree_flatten_with_path(moments[1])[0]
            for path, m in flat_m:
                p = state.params
                for k in path:
                    p = p[k.key]
                assert m.sharding.spec == p.sharding.spec, path
                checked += 1
    assert checked == 2 * len(jax.tree_util.tree_leaves(state.params))   # every param, mu and nu
    counts = optax.tree_utils.tree_get_all_with_path(state.opt_state, "count")
    assert len(counts) == 4 + 1 and all(c[1].sharding.spec == P() for c in counts)  # 4 Adams + lr


def test_mesh_and_rule_errors_say_what_to_change():
    with pytest.raises(MeshError, match="do not divide the 8 devices"):
        resolve_mesh_shape((3, -1, 1), (1, 1, 1), 8)
    with pytest.raises(MeshError, match="uses 4 devices per slice but 8"):
        resolve_mesh_shape((2, 2, 1), (1, 1, 1), 8)
    assert resolve_mesh_shape((2, -1, 2), (1, 1, 1), 8) == (2, 2, 2)
    assert resolve_mesh_shape((1, -1, 1), (2, 1, 1), 8) == (2, 4, 1)  # 2 slices x 4 devices
    c = get_config("tiny")
    c.sharding.rules = "embed=fsdp+pipeline"
    with pytest.raises(MeshError, match="unknown mesh axis 'pipeline'"):
        rules_from_config(c)
    c.sharding.rules = "embedding=fsdp"
    with pytest.raises(MeshError, match="unknown logical axis 'embedding'"):
        rules_from_config(c)
    c.sharding.rules = "embed=none,mlp=fsdp+tensor"
    rules = dict(rules_from_config(c))
    assert rules["embed"] is None and rules["mlp"] == ("fsdp", "tensor")
    assert make_mesh((1, 1, -1), (1, 2, 1)).shape == {"data": 1, "fsdp": 2, "tensor": 4}


@pytest.mark.slow
def test_resume_gives_identical_losses_and_restores_onto_another_mesh(tmp_path):
    def cfg():
        c = short_config(steps=24)
        c.checkpoint.update(enabled=True, every=0.25, async_save=True)
        c.eval.every = 0.5
        return c
    train(cfg(), str(tmp_path / "straight"))
    first = cfg()
    first.train.max_steps = 12
    s = train(first, str(tmp_path / "resumed"))
    assert s["status"] == "preempted" and s["steps"] == 12
    assert not (tmp_path / "resumed" / rc.DONE_FILE).exists()
    s = train(cfg(), str(tmp_path / "resumed"))
    assert s["status"] == "done" and s["steps"] == 24
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert len(straight) == len(resumed) == 12
    assert straight == resumed                                   # bit-identical
    ev = [r["step"] for r in rc.read_jsonl(str(tmp_path / "resumed" / rc.EVAL_FILE))[0]]
    assert ev == [0, 12, 24]
    # keep=2 latest (18, 24) plus the permanent checkpoint at half the budget (12)
    kept = sorted(int(d) for d in os.listdir(tmp_path / "straight" / "checkpoints") if d.isdigit())
    assert kept == [12, 18, 24]
    # restore the step-12 checkpoint of a data=8 run onto a (fsdp=4, tensor=2) mesh
    other = cfg()
    other.train.max_steps = 12
    train(other, str(tmp_path / "remesh"))
    moved = cfg()
    moved.mesh.update(data=1, fsdp=4, tensor=2)
    train(moved, str(tmp_path / "remesh"))
    np.testing.assert_allclose(losses(tmp_path / "remesh"), straight, rtol=2e-4)


@pytest.mark.slow
def test_nan_stops_the_run_with_its_status_and_keeps_the_last_good_checkpoint(tmp_path):
    c = short_config(steps=12)
    c.checkpoint.update(enabled=True, every=1 / 12, async_save=False, keep=20)
    # float16 compute with the largest learning rate allowed overflows within a few steps
    c.optimizer.update(lr=10.0, warmup=0.0, decay="constant", grad_clip=0.0)
    c.model.dtype = "float16"
    s = train(c, str(tmp_path / "nan"))
    assert s["status"] == "nan"
    assert not (tmp_path / "nan" / rc.DONE_FILE).exists()
    summary = json.loads((tmp_path / "nan" / rc.SUMMARY_FILE).read_text())
    assert summary["status"] == "nan"
    metrics, _ = rc.read_jsonl(str(tmp_path / "nan" / rc.METRICS_FILE))
    assert all(np.isfinite(r["loss"]) for r in metrics)         # nothing non-finite logged
    ckpts = [int(d) for d in os.listdir(tmp_path / "nan" / "checkpoints") if d.isdigit()]
    last_logged = max([r["step"] for r in metrics], default=0)
    assert ckpts and max(ckpts) == last_logged < 12   # saved up to the last finite step only


def _cli(workdir, *overrides, env=None):
    return [sys.executable, "-m", "mdm.train", "--config", "experiments/base.py:tiny",
            "--workdir", str(workdir), "--progress=false", *overrides]


@pytest.mark.slow
def test_sigterm_saves_a_restorable_checkpoint_and_a_readable_log(tmp_path, repo_root):
    run = tmp_path / "pre"
    args = ["--config.train.total_tokens=2048000", "--config.checkpoint.every=0.5",
            "--config.logging.every_steps=5", "--config.eval.every=0"]
    proc = subprocess.Popen(_cli(run, *args), cwd=repo_root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    metrics = run / rc.METRICS_FILE
    deadline = time.time() + 240
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 75, out[-2000:]
    summary = json.loads((run / rc.SUMMARY_FILE).read_text())
    assert summary["status"] == "preempted" and summary["steps"] > 0
    records, torn = rc.read_jsonl(str(metrics))
    assert records and records[-1]["step"] == summary["steps"]
    assert str(summary["steps"]) in os.listdir(run / "checkpoints")
    # rerunning the command resumes from that checkpoint and finishes
    p = subprocess.run(_cli(run, *args, "--config.train.max_steps=5"), cwd=repo_root,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 75  # max_steps stops early again: resumable, not done
    after, _ = rc.read_jsonl(str(metrics))
    assert after[-1]["step"] == summary["steps"] + 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_match_one_process(tmp_path, repo_root):
    steps = 8
    args = [f"--config.train.total_tokens={16 * 64 * steps}", "--config.logging.every_steps=2",
            "--config.eval.every=0", "--config.eval.num_examples=16",
            "--config.checkpoint.enabled=false"]
    single = short_config(steps)
    train(single, str(tmp_path / "single"))
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4 "
               "--xla_cpu_collective_call_terminate_timeout_seconds=60", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen(_cli(tmp_path / "multi", *args,
                                   f"--config.multihost.coordinator=127.0.0.1:{port}",
                                   "--config.multihost.num_processes=2",
                                   f"--config.multihost.process_id={i}"),
                              cwd=repo_root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    cfg = json.loads((tmp_path / "multi" / rc.CONFIG_FILE).read_text())
    assert cfg["resolved"]["num_processes"] == 2 and cfg["resolved"]["num_devices"] == 8
    np.testing.assert_allclose(losses(tmp_path / "multi"), losses(tmp_path / "single"), rtol=2e-4)


@pytest.mark.slow
def test_plan_reports_memory_for_a_3b_model_on_64_fake_devices(repo_root):
    common = ["--fake_devices", "64", "--config.model.width=3072", "--config.model.depth=26",
              "--config.model.num_heads=24", "--config.token_space.text_vocab=50000",
              "--config.data.seq_len=1024", "--config.train.physical_batch=64",
              "--config.model.dtype=bfloat16", "--config.model.remat=true",
              "--config.model.scan_layers=true"]   # a 26-layer model scans (as the ladder)
    # the two plans compile at once (each compile is one thread; the machine has two cores)
    t0 = time.time()
    procs = {name: subprocess.Popen([sys.executable, "-m", "mdm.plan", "--config",
                                     "experiments/base.py:default", *common, *mesh],
                                    cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
             for name, mesh in (("fsdp", ["--config.mesh.fsdp=64", "--config.mesh.data=1"]),
                                ("data", ["--config.mesh.data=64"]))}
    res = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        res[name] = json.loads(out.strip().splitlines()[-1])
    assert time.time() - t0 < 120
    assert 3.0e9 < res["fsdp"]["params_total"] < 3.5e9
    assert res["fsdp"]["num_devices"] == 64
    # ZeRO-3 style sharding holds 1/64 of the state per device; pure data parallelism all of it
    assert res["data"]["argument_bytes"] > 30 * res["fsdp"]["argument_bytes"]
    assert res["fsdp"]["per_device_bytes"] < 0.5 * res["data"]["per_device_bytes"]


def test_ctrl_c_requests_preemption_and_a_second_one_interrupts():
    import os as _os
    from mdm.trainer import _Preemption
    with _Preemption() as pre:
        _os.kill(_os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert pre.requested                      # the first Ctrl-C: save at the next step
        with pytest.raises(KeyboardInterrupt):    # the second: stop now
            _os.kill(_os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
