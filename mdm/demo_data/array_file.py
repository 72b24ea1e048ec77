"""Model weights as plain arrays: one uncompressed .npz holding a JSON header and named numeric
arrays, read with `np.load(allow_pickle=False)`. Nothing in such a file can run code when read.

    header (a uint8 array of UTF-8 JSON, stored under the name "header"):
        {"format": "mdm-image-checker", "version": 2,
         "arrays": {"support_vectors": {"shape": [412, 64], "dtype": "float64"}, ...},
         ...the model's own scalars and names...}

`read_arrays` checks the header (format, version, the exact set of arrays, each one's shape and
dtype, numeric dtypes only) before any array is handed back. Files written by the old pickle
persistence are refused by their bytes, never unpickled.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

HEADER = "header"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NUMERIC_KINDS = "biuf"             # bool, signed / unsigned int, float


class ArrayFileError(ValueError):
    """An array file is missing, of another kind, damaged, or does not match its header."""


def write_arrays(path: str | os.PathLike, fmt: str, version: int, arrays: Mapping[str, Any],
                 **meta: Any) -> Path:
    """Write `arrays` (numeric numpy arrays) and a JSON header with `meta` to `path` (.npz),
    atomically."""
    p = Path(path)
    arrs = {k: np.asarray(v) for k, v in arrays.items()}
    for k, a in arrs.items():
        if k == HEADER or a.dtype.kind not in _NUMERIC_KINDS:
            raise ArrayFileError(f"array {k!r} ({a.dtype}) cannot be stored: numeric arrays only")
    header = {"format": fmt, "version": version, **meta,
              "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrs.items()}}
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), np.uint8)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{HEADER: blob}, **arrs)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, p)
    return p


def looks_like_pickle(path: str | os.PathLike) -> bool:
    """True for the old `.pkl` checker files (by name, or by the pickle protocol byte)."""
    p = Path(path)
    if p.suffix == ".pkl":
        return True
    try:
        with open(p, "rb") as f:
            return f.read(1) == b"\x80"
    except OSError:
        return False


def read_arrays(path: str | os.PathLike, fmt: str, version: int, what: str
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of an array file written by `write_arrays` with this format and version.

    Raises ArrayFileError (one line) for a pickle, a file of another format or version, or arrays
    that differ from the header; nothing is unpickled or executed."""
    p = Path(path)
    if not p.is_file():
        raise ArrayFileError(f"{p}: no {what} file here; build (or rebuild) the demo data "
                             "(python -m mdm.demo_data, or make demo)")
    with open(p, "rb") as f:
        magic = f.read(4)
    if looks_like_pickle(p) or magic not in _ZIP_MAGIC:
        kind = "a pickle (the old format)" if looks_like_pickle(p) else "not an .npz array file"
        raise ArrayFileError(f"{p} is {kind}, not an mdm {what}; refusing to load it "
                             "(it is never unpickled): rebuild the demo data "
                             "(python -m mdm.demo_data, or make demo) to write the .npz checker")
    try:
        with np.load(p, allow_pickle=False) as z:
            if HEADER not in z.files:
                raise ArrayFileError(f"{p} is not an mdm {what} (no JSON header)")
            header = json.loads(z[HEADER].tobytes().decode("utf-8"))
            _check_header(p, header, fmt, version, what, set(z.files) - {HEADER})
            arrays = {k: z[k] for k in header["arrays"]}
    except ArrayFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ArrayFileError(f"{p} is not a readable mdm {what}: "
                             f"{type(e).__name__}: {e}".splitlines()[0]) from None
    for k, spec in header["arrays"].items():
        a = arrays[k]
        if list(a.shape) != list(spec["shape"]) or a.dtype.str != spec["dtype"]:
            raise ArrayFileError(f"{p}: array {k!r} is {a.dtype.str} {list(a.shape)}, the header "
                                 f"says {spec['dtype']} {spec['shape']}")
    return header, arrays


def _check_header(p: Path, header: Any, fmt: str, version: int, what: str,
                  names: set[str]) -> None:
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise ArrayFileError(f"{p} is not an mdm {what} (format "
                             f"{header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("version") != version:
        raise ArrayFileError(f"{p}: {what} version {header.get('version')!r}, this code reads "
                             f"version {version}; rebuild it")
    arrays = header.get("arrays")
    if not isinstance(arrays, dict) or set(arrays) != names:
        raise ArrayFileError(f"{p}: the arrays {sorted(names)} do not match the header's "
                             f"{sorted(arrays) if isinstance(arrays, dict) else arrays}")
    for k, spec in arrays.items():
        ok = (isinstance(spec, dict) and isinstance(spec.get("shape"), list)
              and all(isinstance(n, int) and n >= 0 for n in spec["shape"])
              and isinstance(spec.get("dtype"), str))
        if not ok or np.dtype(spec["dtype"]).kind not in _NUMERIC_KINDS:
            raise ArrayFileError(f"{p}: header entry for array {k!r} is invalid: {spec!r}")


def require(cond: bool, path: str | os.PathLike, what: str, msg: str) -> None:
    """Raise ArrayFileError naming the file unless `cond` (model-specific header checks)."""
    if not cond:
        raise ArrayFileError(f"{path}: not a valid mdm {what}: {msg}")
