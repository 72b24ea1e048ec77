"""Device mesh and logical-axis rules (DESIGN.md section 7).

The mesh has three named axes, each the product of an intra-slice (ICI) and a cross-slice (DCN)
factor:

    data    pure data parallelism (parameters replicated)
    fsdp    data parallelism with parameters and optimizer state sharded (ZeRO-3 style)
    tensor  tensor (model) parallelism over heads / MLP hidden / vocabulary

Batch dimensions shard over (data, fsdp); parameters follow the logical rules below, which a
config can override entry by entry (`config.sharding.rules`). One ICI size may be -1: it
absorbs the devices the others leave.

We build a `jax.sharding.Mesh` with Auto axis types (`jax.make_mesh` now defaults to explicit
axes, under which a plain matmul over a sharded dimension raises).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or tuple of axes, or None = replicated)
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("layers", None),
)


class MeshError(ValueError):
    """The mesh or the logical rules do not fit the devices; the message says what to change."""


def resolve_mesh_shape(ici: Sequence[int], dcn: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Fill a -1 ICI factor and check that prod(ici) * prod(dcn) == num_devices."""
    ici = list(int(v) for v in ici)
    dcn = [int(v) for v in dcn]
    if any(v < 1 for v in dcn):
        raise MeshError(f"mesh.dcn_* factors must be >= 1, got {dict(zip(MESH_AXES, dcn))}")
    if ici.count(-1) > 1:
        raise MeshError("at most one of mesh.data / mesh.fsdp / mesh.tensor may be -1")
    if any(v == 0 or v < -1 for v in ici):
        raise MeshError(f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, ici))}")
    per_slice = num_devices // math.prod(dcn) if num_devices % math.prod(dcn) == 0 else None
    if per_slice is None:
        raise MeshError(f"the DCN factors {dict(zip(MESH_AXES, dcn))} (product {math.prod(dcn)}) "
                        f"do not divide the {num_devices} devices")
    if -1 in ici:
        known = math.prod(v for v in ici if v != -1)
        if per_slice % known:
            raise MeshError(f"mesh {dict(zip(MESH_AXES, ici))}: the fixed sizes (product {known}) "
                            f"do not divide the {per_slice} devices per slice; change them so "
                            f"their product divides {per_slice}")
        ici[ici.index(-1)] = per_slice // known
    if math.prod(ici) != per_slice:
        raise MeshError(f"mesh {dict(zip(MESH_AXES, ici))} uses {math.prod(ici)} devices per slice "
                        f"but {per_slice} are available ({num_devices} devices / "
                        f"{math.prod(dcn)} slices); set one axis to -1 or make the product "
                        f"{per_slice}")
    return tuple(i * d for i, d in zip(ici, dcn))


def make_mesh(ici: Sequence[int], dcn: Sequence[int] = (1, 1, 1),
              devices: Sequence[Any] | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(ici, dcn, len(devices))
    ici_resolved = tuple(s // d for s, d in zip(shape, dcn))
    if math.prod(dcn) > 1:
        if hasattr(devices[0], "slice_index"):  # multi-slice TPU: slices are the DCN granules
            from jax.experimental import mesh_utils
            arr = mesh_utils.create_hybrid_device_mesh(ici_resolved, tuple(dcn), devices=devices)
        else:  # elsewhere: consecutive blocks of devices (e.g. hosts) are the granules
            arr = np.asarray(devices).reshape(*dcn, *ici_resolved)
            arr = arr.transpose(0, 3, 1, 4, 2, 5).reshape(shape)
    else:
        try:
            from jax.experimental import mesh_utils
            arr = mesh_utils.create_device_mesh(shape, devices=devices)
        except Exception:  # non-TPU topologies without physical layout information
            arr = np.asarray(devices).reshape(shape)
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return Mesh(arr, MESH_AXES, axis_types=auto)


def mesh_from_config(cfg: Any, devices: Sequence[Any] | None = None) -> Mesh:
    m = cfg.mesh
    return make_mesh((m.data, m.fsdp, m.tensor), (m.dcn_data, m.dcn_fsdp, m.dcn_tensor), devices)


def parse_rule_overrides(text: str) -> dict[str, Any]:
    """'embed=fsdp+tensor,mlp=none' -> {'embed': ('fsdp', 'tensor'), 'mlp': None}."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        if "=" not in item:
            raise MeshError(f"sharding rule {item!r} must look like name=axis, name=a+b or "
                            "name=none")
        name, axes = (x.strip() for x in item.split("=", 1))
        parts = tuple(a for a in axes.split("+") if a)
        out[name] = None if axes.lower() in ("none", "") else (parts[0] if len(parts) == 1
                                                               else parts)
    return out


def rules_from_config(cfg: Any) -> tuple[tuple[str, Any], ...]:
    """DEFAULT_RULES with config.sharding.rules overrides applied, validated."""
    rules = dict(DEFAULT_RULES)
    for name, axes in parse_rule_overrides(cfg.sharding.rules).items():
        if name not in rules:
            raise MeshError(f"sharding rule for unknown logical axis {name!r}; known: "
                            f"{sorted(rules)}")
        rules[name] = axes
    validate_rules(tuple(rules.items()))
    return tuple(rules.items())


def validate_rules(rules: Sequence[tuple[str, Any]]) -> None:
    for name, axes in rules:
        names = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        for a in names:
            if a not in MESH_AXES:
                raise MeshError(f"sharding rule '{name}' names unknown mesh axis '{a}'; mesh axes "
                                f"are {MESH_AXES} (use None to replicate)")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dim over (data, fsdp); the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def mesh_context(mesh: Mesh, rules: Sequence[tuple[str, Any]] | None = None):
    """Context in which jit tracing sees `mesh` (and the logical rules, if given)."""
    import contextlib

    import flax.linen as nn
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(mesh) if hasattr(jax, "set_mesh") else mesh)
    if rules is not None:
        stack.enter_context(nn.logical_axis_rules(rules))
    return stack
