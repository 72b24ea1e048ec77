"""Plan a job before launching it: lower and compile the train step for a config and mesh from
abstract shapes (nothing is allocated), and report per-device memory, FLOPs per step and the
largest micro-batch that fits a per-device memory budget; with --target, also the predicted
step time, tokens/s and memory fit on a named accelerator.

    python -m mdm.plan --config experiments/base.py:default --fake_devices 64 \
        --config.mesh.fsdp=64 --config.mesh.data=1 --memory_gb 16

`--fake_devices N` plans for N CPU devices (set before JAX starts), so a pod-sized mesh can be
checked on a laptop. Memory figures are XLA's buffer assignment for one device: arguments
(the sharded state and batch) + temporaries (activations, gradients) + outputs not aliased to
donated inputs. FLOPs come from the analytic formula (mdm.flops), and XLA's own count is
printed beside it when available (XLA counts a scanned layer stack once, so it is lower).

The largest micro-batch: memory is affine in the micro-batch size m (state + m x activations),
so two compiles at m1 < m2 give the slope; the prediction is rounded down to a size that divides
the physical batch and is a multiple of the data-parallel size, then verified by a third compile.

Target report (`--target NAME [--assumed_mfu 0.4]`): NAME is a TPU slice as Cloud TPU writes
its accelerator type, where for v4 and v5p the number counts TensorCores, two per chip
(v5p-64 = 32 chips), or N GPUs written Nx<GPU> (8xH100); mdm.hardware holds the chips' dense
bf16 peaks and HBM and the naming rules. The step is compiled on as many fake CPU devices as the
target has chips, with the config's mesh (which must use them all), and the report gives:

  * per-device memory (XLA:CPU's buffer assignment, an estimate of the accelerator's) against
    the chip's HBM: fits / does not fit;
  * FLOPs per step per device: XLA's cost analysis of the compiled step when it counts every
    layer and micro-batch; when the step scans its layers (model.scan_layers) or its
    micro-batches (train.micro_batch), XLA counts a loop body once, so the analytic model FLOPs
    (mdm.flops x tokens per step / devices) are used and XLA's count is printed beside them;
  * predicted step time = FLOPs per device / (peak x assumed MFU), and the roofline lower bound
    at MFU 1; tokens/s at both; the run's train.total_tokens at the assumed MFU;
  * attention: the compiled step necessarily uses the einsum path on fake CPU devices (a
    config asking for splash or cudnn is compiled with einsum); on the target, "auto" resolves
    to splash (TPU) or cudnn (GPU, bf16/fp16 compute) (mdm.attention.resolve_attention). The
    einsum step materialises the [B, H, L, L] scores, so its memory is an upper bound for the
    flash kernels.

The 3B model (experiments/ladder.py size s11 at paper scale: width 3072, 24 layers, 24 heads of
128, bf16 compute, remat, 1024-token sequences) with 1M-token steps (1024 sequences) split into
micro-batches, on a v5p-64 slice (32 chips, FSDP over all) and on one 8xH100 node:

    python -m mdm.plan --config experiments/ladder.py:size=s11,scale=paper,tokens=6.4e12 \
        --target v5p-64 --config.mesh.data=1 --config.mesh.fsdp=32 \
        --config.train.physical_batch=1024 --config.train.micro_batch=512
    python -m mdm.plan --config experiments/ladder.py:size=s11,scale=paper,tokens=6.4e12 \
        --target 8xH100 --config.mesh.data=1 --config.mesh.fsdp=8 \
        --config.train.physical_batch=1024 --config.train.micro_batch=256

(README.md, "Scaling on meshes and clusters", has their output and how long they took.)

Exit codes as mdm.train's: 0 planned, 2 bad command line or config, 65 bad token shards (a
config with data.source=shards opens them); 2 and 65 are one line on stderr, no traceback.
"""
from __future__ import annotations

import os
import sys


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def _early_fake_devices(argv: list[str]) -> int:
    """Ask for N fake CPU devices (--fake_devices N, or the chip count of --target) before JAX
    starts its backends; returns N (0: none asked for, or a bad value left to flag parsing)."""
    from mdm.hardware import TargetError, parse_target
    n = _flag_value(argv, "fake_devices")
    target = _flag_value(argv, "target")
    if (not n or n == "0") and target:
        try:
            n = str(parse_target(target).num_chips)
        except TargetError:
            return 0
    if not n or not n.isdigit() or int(n) < 1:
        return 0
    flags = os.environ.get("XLA_FLAGS", "")
    flags = " ".join(f for f in flags.split() if "device_count" not in f)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    return int(n)


if __name__ == "__main__":
    _early_fake_devices(sys.argv)

import dataclasses  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

import ml_collections as mlc  # noqa: E402

from mdm.assemble import build, setup_train_step  # noqa: E402
from mdm.attention import check_attention, resolve_attention  # noqa: E402
from mdm.flops import model_measures  # noqa: E402
from mdm.hardware import GiB, Target, parse_target  # noqa: E402
from mdm.sharding import data_parallel_size, mesh_from_config, rules_from_config  # noqa: E402


@dataclasses.dataclass
class StepPlan:
    micro_batch: int
    argument_bytes: int
    temp_bytes: int
    output_bytes: int
    alias_bytes: int
    xla_flops: float | None

    @property
    def per_device_bytes(self) -> int:
        return self.argument_bytes + self.temp_bytes + self.output_bytes - self.alias_bytes


def compile_attention(cfg: mlc.ConfigDict) -> str:
    """The attention implementation the planner compiles with on this (CPU) backend: the
    config's, or einsum where the config's needs an accelerator (splash, cudnn)."""
    import jax

    from mdm.attention import ATTENTION_IMPLS
    asked = cfg.model.get("attention", "auto")
    if asked not in ATTENTION_IMPLS:
        return asked                            # config validation rejects it, in one line
    impl = resolve_attention(mlc.ConfigDict({"attention": asked, "dtype": cfg.model.dtype}),
                             jax.default_backend())
    return impl if impl in ("einsum", "xla") else "einsum"


def compile_step(cfg: mlc.ConfigDict, micro_batch: int) -> StepPlan:
    """Lower + compile the train step with `micro_batch` rows per micro-batch; no allocation."""
    cfg = cfg.copy_and_resolve_references()
    cfg.train.micro_batch = micro_batch if micro_batch != cfg.train.physical_batch else 0
    cfg.model.attention = compile_attention(cfg)
    b = build(cfg)
    mesh = mesh_from_config(cfg)
    rules = rules_from_config(cfg)
    st = setup_train_step(cfg, b, mesh, rules)
    compiled = st.step.lower(st.abstract_state(),
                             st.abstract_batch(b.rows_per_step, cfg.data.seq_len)).compile()
    mem = compiled.memory_analysis()
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        xla_flops = float(cost.get("flops", float("nan")))
    except Exception:  # some backends do not implement it
        xla_flops = None
    return StepPlan(micro_batch, int(mem.argument_size_in_bytes), int(mem.temp_size_in_bytes),
                    int(mem.output_size_in_bytes), int(mem.alias_size_in_bytes), xla_flops)


def plan(cfg: mlc.ConfigDict, memory_bytes: float | None = None, target: Target | None = None,
         assumed_mfu: float = 0.4) -> dict[str, Any]:
    asked = cfg
    cfg = cfg.copy_and_resolve_references()
    cfg.model.attention = compile_attention(cfg)   # what can be traced here (CPU)
    b = build(cfg)
    mesh = mesh_from_config(cfg)
    dp = data_parallel_size(mesh)
    measures = model_measures(b.model_cfg, cfg.data.seq_len)
    fpt = measures.pop("flops_per_token")
    counts = measures
    B = cfg.train.physical_batch
    current = cfg.train.micro_batch or B
    p = compile_step(cfg, current)
    out: dict[str, Any] = {
        "mesh": dict(mesh.shape), "num_devices": mesh.size, **counts,
        "flops_per_token": fpt, "flops_per_step": fpt * b.tokens_per_step,
        "flops_per_step_per_device": fpt * b.tokens_per_step / mesh.size,
        "xla_flops_per_device": p.xla_flops, "micro_batch": current,
        "per_device_bytes": p.per_device_bytes, "argument_bytes": p.argument_bytes,
        "temp_bytes": p.temp_bytes,
    }
    if memory_bytes:
        sizes = [m for m in range(dp, B + 1, dp) if B % m == 0]
        if len(sizes) >= 2:
            m1, m2 = sizes[0], sizes[min(1, len(sizes) - 1)]
            p1 = p if current == m1 else compile_step(cfg, m1)
            p2 = p if current == m2 else compile_step(cfg, m2)
            slope = (p2.per_device_bytes - p1.per_device_bytes) / (m2 - m1)
            pred = m1 + (memory_bytes - p1.per_device_bytes) / slope if slope > 0 else B
            fits = [m for m in sizes if m <= pred]
            best = max(fits) if fits else None
            while best is not None:  # verify, stepping down if the affine model was optimistic
                pb = compile_step(cfg, best)
                if pb.per_device_bytes <= memory_bytes:
                    break
                smaller = [m for m in sizes if m < best]
                best = max(smaller) if smaller else None
            out["largest_micro_batch"] = best
            out["memory_budget_bytes"] = memory_bytes
    if target is not None:
        out["target"] = target_report(asked, out, target, assumed_mfu)
    return out


def target_report(cfg: mlc.ConfigDict, out: dict[str, Any], target: Target,
                  assumed_mfu: float) -> dict[str, Any]:
    """Memory fit, FLOPs, predicted step time and tokens/s of the planned step on `target`
    (module docstring); `out` is plan()'s result for the same config on target.num_chips
    fake devices."""
    b = build(cfg)
    n = out["num_devices"]
    if n != target.num_chips:
        raise ValueError(f"--target {target.name} has {target.num_chips} chips but the plan ran "
                         f"on {n} devices")
    mc = b.model_cfg
    xla_complete = not mc.scan_layers and b.num_micro == 1
    xla = out["xla_flops_per_device"]
    if xla_complete and xla:
        flops, basis = xla, "xla"
    else:
        flops, basis = out["flops_per_step_per_device"], "analytic"
    peak = target.chip.peak_bf16_flops
    step = flops / (peak * assumed_mfu)
    roof = flops / peak
    tokens = b.tokens_per_step
    on_target = resolve_attention(mc, target.chip.backend)
    try:
        check_attention(on_target, target.chip.backend, mc.dtype)
        problem = ""
    except ValueError as e:
        problem = str(e)
    return {
        "name": target.name, "chip": target.chip.label, "num_chips": target.num_chips,
        "backend": target.chip.backend, "peak_flops_per_chip": peak,
        "hbm_bytes": target.chip.hbm_bytes,
        "fits": out["per_device_bytes"] <= target.chip.hbm_bytes,
        "memory_fraction": out["per_device_bytes"] / target.chip.hbm_bytes,
        "flops_per_device": flops, "flops_basis": basis, "xla_flops_per_device": xla,
        "scan_layers": mc.scan_layers, "num_micro": b.num_micro,
        "assumed_mfu": assumed_mfu, "step_time_s": step, "step_time_roofline_s": roof,
        "tokens_per_step": tokens, "tokens_per_s": tokens / step,
        "tokens_per_s_roofline": tokens / roof, "total_tokens": float(cfg.train.total_tokens),
        "run_time_s": b.total_steps * step, "total_steps": b.total_steps,
        "attention_config": mc.attention, "attention_compiled": compile_attention(cfg),
        "attention_on_target": on_target, "attention_problem": problem,
    }


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    if s < 2 * 3600:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} days"


def format_target_report(out: dict[str, Any]) -> str:
    """The --target table (markdown), from plan()'s result."""
    t = out["target"]
    gb = lambda x: f"{x / GiB:.1f} GiB"
    hbm = t["hbm_bytes"]
    chip_hbm = gb(hbm) if hbm % GiB == 0 else f"{gb(hbm)} (= {hbm / 1e9:.0f} GB)"
    count = lambda x: f"{x / 1e9:.3f}B" if x >= 1e8 else f"{x / 1e6:.3f}M"
    mfu = t["assumed_mfu"]
    if t["flops_basis"] == "xla":
        fl = f"{t['flops_per_device']:.3e} (XLA cost analysis; analytic " \
             f"{out['flops_per_step_per_device']:.3e})"
    else:
        why = " and ".join(w for w, on in (("layers", t["scan_layers"]),
                                           ("micro-batches", t["num_micro"] > 1)) if on)
        xla = "n/a" if not t["xla_flops_per_device"] else f"{t['xla_flops_per_device']:.3e}"
        fl = (f"{t['flops_per_device']:.3e} (analytic, mdm.flops / {t['num_chips']} devices; "
              f"XLA counts {xla}: scanned {why} counted once)")
    att = (f"compiled with {t['attention_compiled']} on fake CPU devices; on {t['name']} "
           + (f"auto resolves to {t['attention_on_target']}" if t["attention_config"] == "auto"
              else f"attention={t['attention_on_target']} as configured"))
    if t["attention_problem"]:
        att += f" (but: {t['attention_problem']})"
    per = lambda x: f"{x:,.0f} ({x / t['num_chips']:,.0f} per chip)"
    rows = [
        ("params", f"{count(out['params_total'])} total, "
                   f"{count(out['params_non_embedding'])} non-embedding"),
        ("tokens per step", f"{t['tokens_per_step']:,} (micro-batch {out['micro_batch']} rows, "
                            f"{t['num_micro']} per step)"),
        ("per-device memory", f"{gb(out['per_device_bytes'])} of {chip_hbm} HBM "
                              f"({100 * t['memory_fraction']:.0f}%): "
                              f"{'fits' if t['fits'] else 'does NOT fit'}"),
        ("FLOPs per step per device", fl),
        (f"step time at MFU {mfu:.2f} (assumed)", _duration(t["step_time_s"])),
        ("step time at MFU 1.00 (roofline)", _duration(t["step_time_roofline_s"])),
        (f"tokens/s at MFU {mfu:.2f}", per(t["tokens_per_s"])),
        ("tokens/s at MFU 1.00", per(t["tokens_per_s_roofline"])),
        (f"train.total_tokens {t['total_tokens']:.3g} at MFU {mfu:.2f}",
         f"{_duration(t['run_time_s'])} ({t['total_steps']:,} steps)"),
        ("attention", att),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"target {parse_target(t['name']).describe()}; mesh {out['mesh']}",
             f"| {'quantity'.ljust(w0)} | {'value'.ljust(w1)} |",
             f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|"]
    lines += [f"| {a.ljust(w0)} | {v.ljust(w1)} |" for a, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from absl import flags
    from ml_collections import config_flags

    from mdm.cli_flags import fail, run
    # The console script (mdm-plan) imports this module before main() runs, so the fake devices
    # are asked for here too; JAX reads them when it starts its backends, at the first compile.
    if _early_fake_devices(sys.argv if argv is None else argv):
        import jax
        from jax._src import xla_bridge
        if xla_bridge.backends_are_initialized():
            fail(f"--fake_devices / --target: JAX has already started with "
                 f"{jax.device_count()} devices; run mdm-plan in a fresh process")
        jax.config.update("jax_platforms", "cpu")
    config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]")
    flags.DEFINE_integer("fake_devices", 0, "plan for N fake CPU devices")
    flags.DEFINE_float("memory_gb", 0.0, "per-device memory budget for the micro-batch search")
    flags.DEFINE_string("target", "", "accelerator to predict for: a TPU slice (v5p-64; v4/v5p "
                        "count TensorCores, 2 per chip) or Nx<GPU> (8xH100); plans on as many "
                        "fake devices as it has chips")
    flags.DEFINE_float("assumed_mfu", 0.4, "model FLOPs utilisation assumed for --target's "
                       "predicted step time")

    def _run(_):
        from absl import logging as absl_logging

        from mdm.cli_flags import EXIT_BAD_DATA
        from mdm.config_validation import ConfigError
        from mdm.data.shards import ShardError
        from mdm.sharding import MeshError
        absl_logging.set_verbosity(absl_logging.WARNING)
        from mdm.hardware import TargetError
        cfg = flags.FLAGS.config
        if cfg is None:
            fail("--config FILE[:ARG] is required (e.g. --config experiments/base.py:default)")
        target = None
        if flags.FLAGS.target:
            try:
                target = parse_target(flags.FLAGS.target)
            except TargetError as e:
                fail(e)
            fd = flags.FLAGS.fake_devices
            if fd and fd != target.num_chips:
                fail(f"--fake_devices {fd} disagrees with --target {target.name} "
                     f"({target.num_chips} chips); leave --fake_devices out")
            if not 0 < flags.FLAGS.assumed_mfu <= 1:
                fail(f"--assumed_mfu must be in (0, 1], got {flags.FLAGS.assumed_mfu}")
        try:
            out = plan(cfg, flags.FLAGS.memory_gb * 2 ** 30 if flags.FLAGS.memory_gb else None,
                       target, flags.FLAGS.assumed_mfu)
        except (ConfigError, MeshError) as e:
            fail(e)
        except ShardError as e:
            fail(e, EXIT_BAD_DATA)
        gb = lambda x: f"{x / 2 ** 30:.2f} GiB"
        print(f"mesh {out['mesh']} ({out['num_devices']} devices); params "
              f"{out['params_total'] / 1e9:.3f}B total, {out['params_non_embedding'] / 1e9:.3f}B "
              f"non-embedding")
        print(f"per-device memory at micro-batch {out['micro_batch']}: "
              f"{gb(out['per_device_bytes'])} (state+batch {gb(out['argument_bytes'])}, "
              f"temporaries {gb(out['temp_bytes'])})")
        print(f"FLOPs per step {out['flops_per_step']:.3e} "
              f"({out['flops_per_step_per_device']:.3e} per device)")
        if "largest_micro_batch" in out:
            print(f"largest micro-batch within {gb(out['memory_budget_bytes'])}: "
                  f"{out['largest_micro_batch']}")
        if target is not None:
            print(format_target_report(out))
        print(json.dumps(out))

    run(_run, argv)


if __name__ == "__main__":
    main()
