"""Multi-host start-up: jax.distributed is initialised once, before any other JAX call, when more
than one process runs.

Detection order: explicit config (multihost.coordinator / num_processes / process_id), then
SLURM (SLURM_NTASKS > 1 inside srun: JAX's own cluster detection), then Cloud TPU multi-worker
slices (TPU_WORKER_HOSTNAMES with more than one host). A single process skips initialisation.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax

log = logging.getLogger("mdm")
_INITIALISED = False


def multihost_requested(cfg: Any | None) -> str:
    """'' when single-process, else how the world is described ('explicit', 'slurm', 'tpu')."""
    if cfg is not None and cfg.multihost.num_processes and cfg.multihost.num_processes > 1:
        return "explicit"
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in os.environ:
        return "slurm"
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if hosts and len(hosts.split(",")) > 1:
        return "tpu"
    return ""


def initialize(cfg: Any | None = None) -> str:
    """Initialise jax.distributed if needed (idempotent). Returns the detected mode."""
    global _INITIALISED
    mode = multihost_requested(cfg)
    if _INITIALISED or not mode:
        return mode
    if mode == "explicit":
        m = cfg.multihost
        if not m.coordinator or not 0 <= m.process_id < m.num_processes:
            from mdm.config_validation import ConfigError
            raise ConfigError("config.multihost: with num_processes > 1 set coordinator "
                              "(host:port) and process_id (0 .. num_processes - 1)")
        jax.distributed.initialize(coordinator_address=m.coordinator,
                                   num_processes=m.num_processes, process_id=m.process_id)
    else:
        jax.distributed.initialize()  # SLURM / TPU: JAX reads the cluster environment
    _INITIALISED = True
    return mode


def describe_layout() -> dict[str, Any]:
    devs = jax.devices()
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "num_devices": len(devs), "local_devices": jax.local_device_count(),
            "device_kind": devs[0].device_kind, "platform": devs[0].platform}
