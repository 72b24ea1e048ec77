"""The generation tasks and their sampler settings: one vocabulary for the whole lab.

Tasks (`mdm.run_contract.GENERATION_TASKS`): text (unconditional), and the token space's task
tokens lower-cased: t2i, i2t (captioning), t2s, s2t (ASR). Each task samples with the settings
of its media's section (`TASK_MODALITY`: text -> text, t2i / i2t -> image, t2s / s2t -> audio).

`DEFAULTS` (one home: mdm/sampling_defaults.py, written by the sampling-defaults study) are
the per-task sampler settings that `make demo`, `make showcase` and the Python API start from.

A study config's `sampling` section (experiments/sampling.py) is checked by `validate`, which
maps each modality section to a SamplerConfig:
    sampler -> method, unmask_schedule -> schedule, steps, temperature, guidance, top_p
"""
from __future__ import annotations

from typing import Any

from mdm.config_validation import ConfigError, check_study
from mdm.run_contract import GENERATION_TASKS, MODALITIES, TASK_MODALITY
from mdm.sampling_defaults import DEFAULTS
from mdm.samplers import SamplerConfig

__all__ = ["DEFAULTS", "TASKS", "SamplerConfig", "sampler_config", "study_tasks", "task_name",
           "validate", "validate_sampling"]

TASKS = GENERATION_TASKS
SAMPLERS: tuple[str, ...] = ("ancestral", "confidence", "margin")   # what the study sweeps
UNMASK: tuple[str, ...] = ("linear", "cosine")
SECTION_FIELDS: tuple[str, ...] = ("steps", "temperature", "guidance", "sampler", "top_p",
                                   "unmask_schedule")

# Names used before the task vocabulary was unified (accepted with a deprecation note).
OLD_NAMES: dict[str, str] = {"caption": "i2t", "asr": "s2t"}


def task_name(name: str) -> str:
    """A task name, old spellings (caption, asr) mapped to the token-space ones."""
    name = OLD_NAMES.get(name, name)
    if name not in TASKS:
        raise ValueError(f"unknown generation task {name!r}; expected one of {TASKS}")
    return name


def _check(ok: bool, field: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config.sampling.{field}: {msg}")


def study_tasks(cfg: Any) -> list[str]:
    """config.sampling.tasks ('+'-joined) -> the task list, duplicates removed."""
    tasks = [t for t in str(cfg.sampling.tasks).split("+") if t]
    _check(bool(tasks) and all(t in TASKS for t in tasks), "tasks",
           f"must be a '+'-joined subset of {TASKS}, got {cfg.sampling.tasks!r}")
    return list(dict.fromkeys(tasks))


def sampler_config(section: Any, name: str = "") -> SamplerConfig:
    """A config.sampling.<modality> section -> SamplerConfig (the rest at its defaults:
    uniform time grid, constant guidance, no top-k)."""
    where = name or "<modality>"
    missing = [f for f in SECTION_FIELDS if f not in section]
    _check(not missing, where, f"missing field(s) {missing}")
    _check(section["steps"] >= 1, f"{where}.steps", f"must be >= 1, got {section['steps']}")
    _check(section["temperature"] > 0, f"{where}.temperature",
           f"must be > 0, got {section['temperature']}")
    _check(section["guidance"] >= 0, f"{where}.guidance",
           f"must be >= 0, got {section['guidance']}")
    _check(section["sampler"] in SAMPLERS, f"{where}.sampler", f"must be one of {SAMPLERS}")
    _check(0 < section["top_p"] <= 1, f"{where}.top_p", "must be in (0, 1]")
    _check(section["unmask_schedule"] in UNMASK, f"{where}.unmask_schedule",
           f"must be one of {UNMASK}, got {section['unmask_schedule']!r}")
    try:
        return SamplerConfig(method=str(section["sampler"]), steps=int(section["steps"]),
                             temperature=float(section["temperature"]),
                             guidance=float(section["guidance"]), top_p=float(section["top_p"]),
                             schedule=str(section["unmask_schedule"]))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.sampling.{where}: {e}") from None


def validate_sampling(cfg: Any) -> dict[str, SamplerConfig]:
    """Check config.sampling (ConfigError naming the field); returns {task: SamplerConfig} for
    the configured tasks. Every modality section is checked, used or not."""
    if "sampling" not in cfg:
        raise ConfigError("config has no `sampling` section; use experiments/sampling.py")
    check_study(cfg)
    s = cfg.sampling
    _check(s.num_samples >= 1, "num_samples", "must be >= 1")
    _check(s.batch_size >= 1, "batch_size", "must be >= 1")
    _check(str(s.get("lengths", "oracle")) in ("oracle", "prior"), "lengths",
           f"must be 'oracle' or 'prior', got {s.get('lengths')!r}")
    sections = {m: sampler_config(s[m], m) for m in MODALITIES}
    return {t: sections[TASK_MODALITY[t]] for t in study_tasks(cfg)}


def validate(cfg: Any) -> dict[str, SamplerConfig]:
    """validate_sampling, and a checkpoint must be named (what a sampling run needs)."""
    samplers = validate_sampling(cfg)
    if not str(cfg.sampling.checkpoint):
        raise ConfigError("config.sampling.checkpoint: empty; set it to the run directory to "
                          "sample (--config.sampling.checkpoint=RUN_DIR, or checkpoint=RUN_DIR "
                          "in the config / sweep argument)")
    return samplers
