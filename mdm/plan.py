"""Plan a job before launching it: lower and compile the train step for a config and mesh from
abstract shapes (nothing is allocated), and report per-device memory, FLOPs per step and the
largest micro-batch that fits a per-device memory budget.

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

Exit codes as mdm.train's: 0 planned, 2 bad command line or config, 65 bad token shards (a
config with data.source=shards opens them); 2 and 65 are one line on stderr, no traceback.
"""
from __future__ import annotations

import os
import sys


def _early_fake_devices(argv: list[str]) -> None:
    for i, a in enumerate(argv):
        if a.startswith("--fake_devices"):
            n = a.split("=", 1)[1] if "=" in a else argv[i + 1]
            flags = os.environ.get("XLA_FLAGS", "")
            flags = " ".join(f for f in flags.split() if "device_count" not in f)
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
            os.environ["JAX_PLATFORMS"] = "cpu"


if __name__ == "__main__":
    _early_fake_devices(sys.argv)

import dataclasses  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

import ml_collections as mlc  # noqa: E402

from mdm.assemble import build, setup_train_step  # noqa: E402
from mdm.flops import model_measures  # noqa: E402
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


def compile_step(cfg: mlc.ConfigDict, micro_batch: int) -> StepPlan:
    """Lower + compile the train step with `micro_batch` rows per micro-batch; no allocation."""
    cfg = cfg.copy_and_resolve_references()
    cfg.train.micro_batch = micro_batch if micro_batch != cfg.train.physical_batch else 0
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


def plan(cfg: mlc.ConfigDict, memory_bytes: float | None = None) -> dict[str, Any]:
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
    return out


def main(argv: list[str] | None = None) -> None:
    from absl import flags
    from ml_collections import config_flags

    from mdm.cli_flags import run
    config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]")
    flags.DEFINE_integer("fake_devices", 0, "plan for N fake CPU devices")
    flags.DEFINE_float("memory_gb", 0.0, "per-device memory budget for the micro-batch search")

    def _run(_):
        from absl import logging as absl_logging

        from mdm.cli_flags import EXIT_BAD_DATA, fail
        from mdm.config_validation import ConfigError
        from mdm.data.shards import ShardError
        from mdm.sharding import MeshError
        absl_logging.set_verbosity(absl_logging.WARNING)
        cfg = flags.FLAGS.config
        if cfg is None:
            fail("--config FILE[:ARG] is required (e.g. --config experiments/base.py:default)")
        try:
            out = plan(cfg, flags.FLAGS.memory_gb * 2 ** 30 if flags.FLAGS.memory_gb else None)
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
        print(json.dumps(out))

    run(_run, argv)


if __name__ == "__main__":
    main()
