"""Experiment results as one ``xarray.Dataset``, written atomically to NetCDF (h5netcdf), with a run manifest.

Schema (the contract between the runner, the CLI and the app):

* dims — the grid fields ``scenario``, ``Lambda``, ``law``, ``seed``, then one per swept field
  (e.g. ``n_agents``), then ``agent``, ``agent_j``, ``iteration``, ``time``, ``state``.
* data vars (``grid…`` = the grid dims):

  - ``cost`` (grid…, agent): material costs L_i at the learned profile;
  - ``empathetic_cost`` (grid…, agent): Λ @ cost;
  - ``reference_cost`` (grid…, agent): closed-form material costs, NaN where none is known;
  - ``gap`` (grid…): signed relative gap of the total cost to the reference, (Σ cost − Σ ref)/|Σ ref|, NaN where none;
  - ``exploitability`` (grid…): NashConv, the sum of certified best-response gains (inf: unbounded);
    ``gain`` (grid…, agent): each agent's gain; ``exploitability_method`` (grid…): "exact:<class>" or
    "numerical:<classes>" (``agents.best_response``);
  - ``reference_grid_cost`` (grid…, agent) and ``gap_grid`` (grid…): the closed-form profile played on the
    cell's own grid and the gap to it (the discretisation part removed); ``iterations`` (grid…): learning steps;
  - ``history`` (grid…, iteration, agent): empathetic costs over learning;
  - ``trajectory`` (grid…, time, state): mean state along the rollout; ``times`` (grid…, time) its time grid;
  - ``n_params`` (grid…, agent): trainable parameters per agent;
  - ``Lambda_matrix`` (grid…, agent, agent_j): the Λ actually used; ``agent_name`` (grid…, agent);
  - ``status`` (grid…): one of ``agents.status.STATUSES`` (``ok``, ``not_converged``, ``not_equilibrium``,
    ``diverged``, ``unbounded``, ``failed``, ``missing``); ``message`` (grid…);
  - ``policy``, ``concept`` (grid…): what the cell resolved to;
  - ``wall_time`` (grid…): seconds (fused cells: their group's time divided among them);
  - ``nfe`` (grid…): vector-field evaluations of the cell's ODE solves (0 for static games; a fused cell
    counts those of the fused solves it took part in; NaN for a failed cell).
  - ``node`` (grid…): the Ray node the cell ran on (``"<ip> <node id>"``) in a cluster run, "" otherwise.

  Numbers are float64 and padded with NaN where a cell has fewer agents, iterations, times or states;
  strings are padded with "".
* attrs — ``manifest`` (the config as TOML text), ``name``, ``seeds`` (list of int), ``versions`` (JSON),
  ``git_commit``, ``source_hash`` (the packages' source, ``agents.experiments.cluster``), ``device``, ``created`` (UTC ISO
  time), ``schema`` (``mftt-results/1``).

  ``weights`` (JSON, only when cells learned MFTT policies): ``{"format": 1, "dir": "<out name>.weights",
  "cells": {"<cell index>": "cell-<index>-<key>.safetensors"}}``, the trained parameters stored beside the file.

Partial files: each finished cell is written to ``<out>.parts/cell-<index>-<key>.npz`` (atomically) so a
killed run resumes without recomputing it; a running cell reports its learning steps in
``<out>.parts/progress-<index>.json`` (``write_progress``/``read_progress``).

Trained weights: a cell whose policy is an MFTT (or a population's shared policy) writes its learned parameters to
``<out>.weights/cell-<index>-<key>.safetensors`` (tensors ``agent.<j>.<k>``: agent j's k-th parameter in
``game.parameters_of(j)`` order; metadata: the cell's ``agents.play`` arguments). ``load_weights`` reads them
back with safetensors (tensors only, never pickle); ``load_trained_game`` rebuilds the cell's game with them
and ``attention_maps`` shows what an agent's trained MFTT attends to.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import io
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import xarray as xr

from control.errors import ValidationError

from ..agent import MFTTPolicy
from ..cell import CellSpec
from ..play import Outcome
from ..population_mftt import MFTTPopulationPolicy
from ..status import PLAYED, STATUSES
from .cluster import git_commit, source_hash  # the code version of a run

SCHEMA = "mftt-results/1"
ENGINE = "h5netcdf"
PAD_DIMS = ("agent", "agent_j", "iteration", "time", "state")
_NUM = {  # per-cell numeric variables and their padded dims
    "cost": ("agent",),
    "empathetic_cost": ("agent",),
    "reference_cost": ("agent",),
    "exploitability": (),
    "history": ("iteration", "agent"),
    "trajectory": ("time", "state"),
    "times": ("time",),
    "n_params": ("agent",),
    "Lambda_matrix": ("agent", "agent_j"),
    "wall_time": (),
    "nfe": (),
    "gain": ("agent",),
    "reference_grid_cost": ("agent",),
    "iterations": (),
}
_STR = {
    "status": (),
    "message": (),
    "policy": (),
    "concept": (),
    "agent_name": ("agent",),
    "exploitability_method": (),
}
# variables added after schema 1 was first written: older files and parts read them as NaN / ""
_LATER = {"gain": ("agent",), "reference_grid_cost": ("agent",), "iterations": ()}
_LATER_STR = ("exploitability_method",)
# the Ray node each cell ran on ("<ip> <node id>" on a cluster; "" for local runs and older files)
_STR["node"] = ()
_LATER_STR = (*_LATER_STR, "node")


# ---- atomic files --------------------------------------------------------------------------
def _publish(tmp: str, path: Path) -> None:
    """Give the temporary file the usual permissions (mkstemp makes it 0600), then rename it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a results Dataset to NetCDF atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine=ENGINE, invalid_netcdf=False)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


MAX_OBJECTS = 10_000  # groups, datasets and attributes a results file may hold
_SCHEMA_VARS = (*_NUM, *_STR, "gap", "gap_grid")
_TEXT_ATTRS = ("schema", "name", "manifest", "versions", "git_commit", "device", "created")
_TEXT_ATTRS = (*_TEXT_ATTRS, "source_hash")  # the code version (agents.experiments.cluster)
_TEXT_ATTRS = (*_TEXT_ATTRS, "weights")  # the trained weights beside the file (JSON index)


def max_read_mb() -> float:
    """Cap on the bytes a results file may declare (datasets + attributes): ``MFTT_MAX_RESULTS_MB`` or 1024."""
    try:
        v = float(os.environ.get("MFTT_MAX_RESULTS_MB", 1024))
    except ValueError:
        return 1024.0
    return v if v > 0 and v == v else 1024.0


def _unreadable(path, e: BaseException) -> ValidationError:
    """The one-line error for a results file that h5py/h5netcdf cannot read."""
    return ValidationError(
        "results",
        "a readable NetCDF file",
        str(path),
        reason=f"{type(e).__name__}: corrupt or truncated",
    )


def open_results(path: str | Path, *, max_mb: float | None = None) -> xr.Dataset:
    """Read a results file into memory, treating it as untrusted; one clear line for anything else.

    Refused before any data is read: HDF5 external storage, virtual datasets and links (they read other
    files), declared sizes over ``max_mb`` (default ``max_read_mb()``). Only the schema's variables are
    read; a file whose variables do not have the schema's dims and kinds is refused.
    """
    if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
        raise ValidationError("results", "a path to a NetCDF file", type(path).__name__)
    path = Path(path)
    if "\x00" in str(path) or not path.is_file():
        raise ValidationError("results", "an existing NetCDF file", str(path))
    _probe(path, int((max_read_mb() if max_mb is None else max_mb) * 2**20))
    try:
        with xr.open_dataset(path, engine=ENGINE) as raw:
            keep = [v for v in _SCHEMA_VARS if v in raw.data_vars]
            ds = raw[keep]
            ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims]).load()
    except Exception as e:  # h5py/h5netcdf raise many kinds on corrupt files
        raise _unreadable(path, e) from None
    return _check_schema(ds, path)


def _check_schema(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """The schema's variables with their dims and kinds; attrs reduced to the known ones (strings, seeds)."""

    def bad(reason: str) -> ValidationError:
        return ValidationError(
            "results", "an mftt results file (status variable, manifest)", str(path), reason=reason
        )

    manifest_text = ds.attrs.get("manifest")
    if "status" not in ds or not isinstance(manifest_text, str):
        raise bad("no status variable or manifest")
    if "nfe" not in ds:  # files written before the nfe variable
        ds["nfe"] = (ds["status"].dims, np.full(ds["status"].shape, np.nan))
    for k, extra in _LATER.items():  # files written before best responses were certified
        if k not in ds:
            shape = ds["status"].shape + tuple(ds.sizes.get(d, 0) for d in extra)
            ds[k] = (ds["status"].dims + extra, np.full(shape, np.nan))
    for k in _LATER_STR:
        if k not in ds:
            ds[k] = (ds["status"].dims, np.full(ds["status"].shape, "", dtype=object))
    if "gap_grid" not in ds:
        ds["gap_grid"] = (ds["status"].dims, np.full(ds["status"].shape, np.nan))
    grid = tuple(ds["status"].dims)
    if not set(GRID_DIMS) <= set(grid) or set(grid) & set(PAD_DIMS):
        raise bad(f"status dims {grid}")
    for k, extra in [*_NUM.items(), *_STR.items(), ("gap", ())]:
        if k not in ds:
            raise bad(f"missing variable {k}")
        if tuple(ds[k].dims) != grid + tuple(extra):
            raise bad(f"{k} dims {tuple(ds[k].dims)}")
        kind = ds[k].dtype.kind
        if (k in _STR) != (kind in "OUS") or (k not in _STR and kind not in "fiub"):
            raise bad(f"{k} of dtype {ds[k].dtype}")
        if k in _STR and kind == "O" and not all(isinstance(x, str) for x in ds[k].values.ravel()):
            raise bad(f"{k} holds non-strings")
    attrs: dict[str, Any] = {
        k: ds.attrs[k] for k in _TEXT_ATTRS if isinstance(ds.attrs.get(k), str)
    }
    seeds = np.asarray(ds.attrs.get("seeds", []))
    if seeds.dtype.kind in "iu" and seeds.ndim <= 1:
        attrs["seeds"] = [int(x) for x in np.atleast_1d(seeds)]
    ds.attrs = attrs
    return ds


GRID_DIMS = ("scenario", "Lambda", "law", "seed")


def _refuse(path: Path, feature: str, where: str) -> ValidationError:
    return ValidationError(
        "results",
        "a self-contained NetCDF file",
        str(path),
        reason=f"{feature} at {where!r} is not allowed: it would read other files",
    )


def _probe(path: Path, max_bytes: int = 2**30) -> None:
    """Check an untrusted file with h5py before h5netcdf sees it: HDF5 signature, no external storage,
    virtual datasets or links, declared sizes within ``max_bytes``; then read every object once (a failed
    open in h5netcdf leaves a half-built object whose finaliser prints 'Exception ignored ...' noise)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89HDF\r\n\x1a\n":
        kind = "classic NetCDF (write NetCDF4)" if head[:3] == b"CDF" else "not HDF5/NetCDF4"
        raise ValidationError("results", "a readable NetCDF file", str(path), reason=kind)

    try:
        with h5py.File(path, "r") as f:
            datasets = _inspect(path, f, max_bytes)
            dict(f.attrs)
            for d in datasets:
                dict(d.attrs)
                d[()]  # within the cap: every dataset readable
    except ValidationError:
        raise
    except Exception as e:  # truncated or damaged HDF5
        raise _unreadable(path, e) from None


def _attr_bytes(obj: Any) -> int:
    total = 0
    for name in obj.attrs:
        aid = h5py.h5a.open(obj.id, name.encode() if isinstance(name, str) else name)
        total += int(np.prod(aid.shape or (), dtype=object)) * max(aid.dtype.itemsize, 1)
    return total


def _inspect(path: Path, f: Any, max_bytes: int) -> list:
    """Walk the file without following links and without reading data; returns its datasets."""
    total = _attr_bytes(f)
    stack, datasets, count = [("", f)], [], 0
    while stack:
        prefix, group = stack.pop()
        for name in group:
            where = f"{prefix}/{name}"
            count += 1
            if count > MAX_OBJECTS:
                raise ValidationError(
                    "results", f"a file of at most {MAX_OBJECTS} objects", str(path)
                )
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise _refuse(path, "an HDF5 external link", where)
            if isinstance(link, h5py.SoftLink):
                raise _refuse(path, "an HDF5 soft link", where)
            obj = group.get(name)
            total += _attr_bytes(obj)
            if isinstance(obj, h5py.Group):
                stack.append((where, obj))
            elif isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                if plist.get_layout() == h5py.h5d.VIRTUAL:
                    raise _refuse(path, "an HDF5 virtual dataset (VDS)", where)
                if plist.get_external_count() > 0:
                    raise _refuse(path, "HDF5 external storage", where)
                total += int(np.prod(obj.shape or (), dtype=object)) * max(obj.dtype.itemsize, 1)
                datasets.append(obj)
            if total > max_bytes:
                raise ValidationError(
                    "results",
                    f"a file declaring at most {max_bytes / 2**20:g} MB",
                    str(path),
                    reason=f"{where!r} brings the declared size to {total / 2**20:.3g} MB; "
                    "set MFTT_MAX_RESULTS_MB to raise the cap",
                )
    return datasets


# ---- text from files -----------------------------------------------------------------------
def plain_text(value: Any, limit: int = 500) -> str:
    """``value`` as one printable line: control and format characters (ANSI escapes, bidi overrides, NUL)
    replaced, whitespace collapsed, cut at ``limit`` characters. Escape it for Rich with ``rich.markup.escape``."""
    text = str(value)
    text = "".join(
        c if c.isprintable() else (" " if c.isspace() else "?") for c in text[: 4 * limit]
    )
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- one cell ------------------------------------------------------------------------------
def _arr(x: Any, ndim: int) -> np.ndarray:
    a = np.asarray(x if x is not None else np.full((0,) * ndim, np.nan), dtype=np.float64)
    if a.ndim != ndim:
        a = a.reshape((-1,) + (1,) * (ndim - 1)) if a.size else np.full((0,) * ndim, np.nan)
    return a


def outcome_dataset(outcome: Outcome, *, key: str = "", index: int = -1) -> xr.Dataset:
    """One ``agents.Outcome`` as a small Dataset over (agent, agent_j, iteration, time, state)."""
    o = outcome
    cost = _arr(o.costs, 1)
    n = cost.shape[0]

    def per_agent(x: np.ndarray | None) -> np.ndarray:
        return _arr(x, 1) if x is not None else np.full(n, np.nan)

    data = {
        "cost": (("agent",), cost),
        "empathetic_cost": (("agent",), _arr(o.empathetic_costs, 1)),
        "reference_cost": (("agent",), per_agent(o.reference_costs)),
        "exploitability": ((), float(o.exploitability if o.exploitability is not None else np.nan)),
        "history": (("iteration", "agent"), _arr(o.history, 2)),
        "trajectory": (("time", "state"), _arr(o.trajectory, 2)),
        "times": (("time",), _arr(o.times, 1)),
        "n_params": (("agent",), _arr(o.n_params, 1)),
        "Lambda_matrix": (("agent", "agent_j"), _arr(o.Lambda, 2)),
        "wall_time": ((), float(o.wall_time or 0.0)),
        "nfe": ((), float(o.nfe)),
        "gain": (("agent",), per_agent(o.gains)),
        "reference_grid_cost": (("agent",), per_agent(o.reference_grid_costs)),
        "iterations": ((), float(o.iterations or 0)),
        "exploitability_method": ((), str(o.exploitability_method or "")),
        "node": ((), ""),  # set by the runner for cluster runs (run_cells(node=True))
        "status": ((), str(o.status)),
        "message": ((), " ".join(str(o.message or "").split())),
        "policy": ((), str(o.policy or "")),
        "concept": ((), str(o.concept or "")),
        "agent_name": (
            ("agent",),
            np.array([str(a) for a in o.agent_names] or [""] * n, dtype=object),
        ),
    }
    attrs: dict[str, Any] = {"cell_key": key, "cell_index": index}
    if (
        o.weights
    ):  # trained MFTT parameters, written beside the results by the runner (write_weights)
        attrs["weights"] = {k: np.asarray(v) for k, v in o.weights.items()}
    return xr.Dataset(data, attrs=attrs)


def failed_dataset(
    message: str, status: str = "failed", *, key: str = "", index: int = -1
) -> xr.Dataset:
    """A cell that produced no outcome (the cell raised): status and message only."""
    ds = outcome_dataset(Outcome.failed(status, message), key=key, index=index)
    ds["nfe"] = np.nan  # no solve was counted
    return ds


def part_path(parts_dir: str | Path, index: int, key: str) -> Path:
    """``<parts_dir>/cell-<index>-<key>.npz``: the key (hash of the cell's arguments) guards against stale parts."""
    return Path(parts_dir) / f"cell-{index:06d}-{key}.npz"


MAX_PART_BYTES = 256 * 2**20  # one cell's numbers; a larger file is not a part we wrote
PART_FORMAT = 2  # parts carry key, arguments hash, code version and data checksum (a stale part is recomputed)
_CODE_PACKAGES = ("control", "mftt", "agents")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 (16 hex) of the source of ``control``, ``mftt`` and ``agents``: a part from other code is recomputed."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for pkg in _CODE_PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            try:
                h.update(f.read_bytes())
            except OSError:
                h.update(b"?")
            h.update(b"\0")
    return h.hexdigest()[:16]


def args_hash(kwargs: Mapping[str, Any] | None) -> str:
    """SHA-256 of a cell's full ``agents.play`` arguments (the cell key is a 16-hex prefix of a SHA-1)."""
    blob = json.dumps(dict(kwargs or {}), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _checksum(arrays: Mapping[str, np.ndarray], strings: Any, dims: Any) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k], dtype=np.float64)
        h.update(f"{k}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps([strings, dims], sort_keys=True).encode())
    return h.hexdigest()


def write_part(
    parts_dir: str | Path,
    index: int,
    key: str,
    ds: xr.Dataset,
    *,
    kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one finished cell atomically as ``.npz`` (numbers) + JSON (strings): ~1 ms, no pickle.

    The JSON also holds what resume checks before trusting the part: the cell key and index, the hash of
    the cell's full arguments (``kwargs``), the code version and a checksum of the data.
    """
    arrays = {k: np.asarray(ds[k].values, dtype=np.float64) for k in _NUM}
    strings = {k: np.asarray(ds[k].values).tolist() for k in _STR}
    dims = {k: list(ds[k].dims) for k in (*_NUM, *_STR)}
    meta = {
        "strings": strings,
        "dims": dims,
        "key": key,
        "index": int(index),
        "format": PART_FORMAT,
        "args": args_hash(kwargs) if kwargs is not None else "",
        "code": code_version(),
        "checksum": _checksum(arrays, strings, dims),
    }
    arrays["_meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = part_path(parts_dir, index, key)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_part(path: str | Path) -> xr.Dataset:
    """Read a partial file written by ``write_part`` (``allow_pickle=False``: data only).

    attrs: ``cell_key``, ``cell_index``, ``args_hash``, ``code_version`` and ``checksum_ok`` (for ``part_problem``).
    """
    with open(
        path, "rb"
    ) as f:  # read once and closed here (np.load leaks the handle of a damaged file)
        blob = f.read(MAX_PART_BYTES + 1)
    if len(blob) > MAX_PART_BYTES:
        raise ValueError(f"part larger than {MAX_PART_BYTES} bytes")
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        meta = json.loads(z["_meta"].tobytes().decode())
        arrays = {k: z[k] for k in _NUM if k in z}
    data = {k: (meta["dims"][k], v) for k, v in arrays.items()}
    data.setdefault("nfe", ((), np.float64(np.nan)))  # parts written before the nfe variable
    for k, extra in _LATER.items():
        if k not in data:
            n = len(meta["strings"].get("agent_name") or []) if extra else 0
            data[k] = (extra, np.full((n,) * len(extra), np.nan))
    for k in _STR:
        if k in _LATER_STR and k not in meta["strings"]:
            data[k] = ((), "")
            continue
        v = meta["strings"][k]
        data[k] = (meta["dims"][k], np.array(v, dtype=object) if isinstance(v, list) else v)
    ok = meta.get("checksum") == _checksum(arrays, meta["strings"], meta["dims"])
    attrs = {
        "cell_key": meta["key"],
        "cell_index": int(meta.get("index", -1)),
        "args_hash": str(meta.get("args", "")),
        "code_version": str(meta.get("code", "")),
        "checksum_ok": int(ok and "checksum" in meta),
        "part_format": int(meta.get("format", 1)),
    }
    return xr.Dataset(data, attrs=attrs)


# why a part is not reused (the runner counts them by reason)
PART_PROBLEMS = (
    "unreadable",
    "written before parts were verified",
    "another cell's part",
    "arguments changed",
    "code changed",
    "checksum mismatch",
    "unknown status",
    "non-finite values in an ok cell",
)


def part_problem(ds: xr.Dataset, cell: Any) -> str | None:
    """Why the part ``ds`` must not stand for ``cell`` (one of ``PART_PROBLEMS``), or None when it may."""
    a = ds.attrs
    if int(a.get("part_format", 1)) < PART_FORMAT:
        return "written before parts were verified"
    if a.get("cell_key") != cell.key or int(a.get("cell_index", -1)) != int(cell.index):
        return "another cell's part"
    if a.get("args_hash") != args_hash(cell.kwargs):
        return "arguments changed"
    if a.get("code_version") != code_version():
        return "code changed"
    if not a.get("checksum_ok"):
        return "checksum mismatch"
    status = str(np.asarray(ds["status"].values).item()) if ds["status"].ndim == 0 else ""
    if status not in STATUSES or status == "missing":
        return "unknown status"
    if status == "ok":
        for k in ("cost", "empathetic_cost", "Lambda_matrix"):
            v = np.asarray(ds[k].values, dtype=np.float64)
            if v.size == 0 or not np.isfinite(v).all():
                return "non-finite values in an ok cell"
        if np.isnan(np.asarray(ds["exploitability"].values, dtype=np.float64)).any():
            return "non-finite values in an ok cell"
    return None


def read_parts(
    parts_dir: str | Path, cells: list, discarded: dict[str, int] | None = None
) -> dict[int, xr.Dataset]:
    """Finished cells in ``parts_dir`` that pass ``part_problem`` for their cell; the others are deleted
    (they will be recomputed) and counted by reason in ``discarded``."""
    out: dict[int, xr.Dataset] = {}
    parts_dir = Path(parts_dir)
    if not parts_dir.is_dir() or parts_dir.is_symlink():
        return out
    for c in cells:
        p = part_path(parts_dir, c.index, c.key)
        if not p.is_file() or p.is_symlink():
            continue
        try:
            ds = read_part(p)
            why = part_problem(ds, c)
        except Exception:  # a torn or forged part is recomputed
            why = "unreadable"
        if why is None:
            out[c.index] = ds
        else:
            if discarded is not None:
                discarded[why] = discarded.get(why, 0) + 1
            p.unlink(missing_ok=True)
    return out


# ---- the whole grid ------------------------------------------------------------------------
def assemble(
    experiment: Any, parts: Mapping[int, xr.Dataset], *, device: str | None = None
) -> xr.Dataset:
    """Stack per-cell Datasets into the grid Dataset (schema above); cells without a part are ``missing``."""
    cells = experiment.cells()
    coords = experiment.coords
    dims = list(experiment.dims)
    shape = tuple(len(coords[d]) for d in dims)
    sizes = dict.fromkeys(PAD_DIMS, 0)
    for ds in parts.values():
        for d in PAD_DIMS:
            sizes[d] = max(sizes[d], ds.sizes.get(d, 0))
    num = {k: np.full(shape + tuple(sizes[d] for d in v), np.nan) for k, v in _NUM.items()}
    strs = {
        k: np.full(shape + tuple(sizes[d] for d in v), "", dtype=object) for k, v in _STR.items()
    }
    strs["status"][...] = "missing"
    grid_index = np.unravel_index(np.arange(len(cells)), shape) if cells else ()
    for c in cells:
        ds = parts.get(c.index)
        if ds is None:
            continue
        at = tuple(int(ix[c.index]) for ix in grid_index)
        for k in _NUM:
            a = np.asarray(ds[k].values, dtype=np.float64)
            num[k][at + tuple(slice(0, s) for s in a.shape)] = a
        for k in _STR:
            raw = np.asarray(ds[k].values)
            a = np.array([str(x) for x in raw.ravel()], dtype=object).reshape(raw.shape)
            if a.ndim == 0:
                strs[k][at] = a.item()
            else:
                strs[k][at + tuple(slice(0, s) for s in a.shape)] = a
    data = {k: (dims + list(_NUM[k]), v) for k, v in num.items()}
    data.update({k: (dims + list(_STR[k]), v) for k, v in strs.items()})
    ref = num["reference_cost"]
    has_ref = np.isfinite(ref).any(-1) & np.isfinite(num["cost"]).all(-1, where=np.isfinite(ref))
    total = np.nansum(num["cost"], -1)  # agents padded with NaN do not count
    ref_total = np.where(has_ref, np.nansum(ref, -1), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(has_ref, (total - ref_total) / np.abs(ref_total), np.nan)
    data["gap"] = (dims, gap)
    # the same gap to the closed-form profile played on the cell's own grid (discretisation removed)
    refg = num["reference_grid_cost"]
    has_g = np.isfinite(refg).any(-1) & np.isfinite(num["cost"]).all(-1, where=np.isfinite(refg))
    g_total = np.where(has_g, np.nansum(refg, -1), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        data["gap_grid"] = (dims, np.where(has_g, (total - g_total) / np.abs(g_total), np.nan))
    ds_coords: dict[str, Any] = {d: _coord(coords[d]) for d in dims}
    for d in PAD_DIMS:
        ds_coords[d] = np.arange(sizes[d])
    out = xr.Dataset(data, coords=ds_coords, attrs=manifest(experiment, device=device))
    out["cost"].attrs["long_name"] = "material cost"
    out["gap"].attrs["long_name"] = "relative gap of total cost to the closed form"
    out["gap_grid"].attrs["long_name"] = (
        "relative gap of total cost to the closed form played on the grid"
    )
    return out


def _coord(values: list) -> np.ndarray:
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    if all(isinstance(v, bool | int) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, int | float) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([json.dumps(v) if not isinstance(v, str) else v for v in values], dtype=object)


# ---- manifest ------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mftt", "numpy", "torch", "ray", "xarray", "h5netcdf", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_description(device: str | None = None) -> str:
    """Where the run happened, without host names or paths: e.g. ``cpu (x86_64, 2 cores)``."""
    desc = f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    if device and device.startswith("cuda"):
        try:
            if torch.cuda.is_available():
                desc = f"{device} ({torch.cuda.get_device_name(0)})"
        except ImportError:
            pass
    return desc


def _scrub(text: str) -> str:
    home = str(Path.home())
    return text.replace(home, "~") if home and home != "/" else text


def manifest(experiment: Any, *, device: str | None = None) -> dict[str, Any]:
    """Dataset attrs: the config as TOML, seeds, versions, git commit, device, time (no home paths)."""
    return {
        "schema": SCHEMA,
        "name": experiment.name,
        "manifest": _scrub(experiment.to_toml()),
        "seeds": [int(s) for s in experiment.seeds],
        "versions": json.dumps(_versions(), sort_keys=True),
        "git_commit": git_commit(),
        "source_hash": source_hash(),
        "device": device_description(device or experiment.device),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def summary_table(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One row per grid cell, averaged over seeds: coords, params, cost (Σ over agents), agent_costs, exploitability, gap."""
    grid = [d for d in ds["status"].dims]
    keep = [d for d in grid if d != "seed"]
    rows = []
    total = ds["cost"].sum("agent", min_count=1)
    ok = ds["status"].isin(list(PLAYED))  # cells with the numbers of a played profile
    stacked = {
        "cost": total.where(ok).mean("seed"),
        "exploitability": ds["exploitability"].where(ok).mean("seed"),
        "gap": ds["gap"].where(ok).mean("seed"),
        "n_params": ds["n_params"].sum("agent", min_count=1).max("seed"),
        "n_ok": (ds["status"] == "ok").sum("seed"),
    }
    if "gap_grid" in ds:
        stacked["gap_grid"] = ds["gap_grid"].where(ok).mean("seed")
    agent_mean = ds["cost"].where(ok).mean("seed")
    if "exploitability_method" not in ds:
        ds = ds.assign(
            exploitability_method=ds["status"].copy(data=np.full(ds["status"].shape, ""))
        )
    idx = np.ndindex(*[ds.sizes[d] for d in keep])
    for ix in idx:
        sel = dict(zip(keep, ix, strict=True))
        row = {
            d: ds[d].values[i].item() if hasattr(ds[d].values[i], "item") else ds[d].values[i]
            for d, i in sel.items()
        }
        for k, v in stacked.items():
            row[k] = float(v.isel(sel).values)
        per_agent = agent_mean.isel(sel).values
        row["agent_costs"] = [float(c) for c in per_agent[np.isfinite(per_agent)]]
        row["n_seeds"] = ds.sizes["seed"]
        statuses = [str(x) for x in np.asarray(ds["status"].isel(sel).values).ravel()]
        row["statuses"] = {k: statuses.count(k) for k in dict.fromkeys(statuses)}
        methods = np.asarray(ds["exploitability_method"].isel(sel).values).ravel()
        row["method"] = ",".join(dict.fromkeys(str(m) for m in methods if str(m)))
        rows.append(row)
    return rows


# ---- trained weights -----------------------------------------------------------------------
WEIGHTS_FORMAT = 1
MAX_WEIGHTS_BYTES = 1024 * 2**20  # one cell's parameters; a larger file is not one we wrote
_WEIGHTS_NAME = re.compile(r"cell-(\d{6,})-([0-9a-f]{1,64})\.safetensors")


def weights_dir_for(out: str | Path) -> Path:
    """Where the trained weights of the run writing ``out`` live: ``<out>.weights/``."""
    return Path(str(out) + ".weights")


def weights_path(weights_dir: str | Path, index: int, key: str) -> Path:
    """``<weights_dir>/cell-<index>-<key>.safetensors`` (the key: hash of the cell's arguments)."""
    return Path(weights_dir) / f"cell-{index:06d}-{key}.safetensors"


def write_weights(
    weights_dir: str | Path,
    index: int,
    key: str,
    weights: Mapping[str, Any],
    *,
    kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one cell's trained parameters atomically as safetensors (metadata: cell, arguments, code)."""
    from safetensors.numpy import save  # optional-weight import: only runs with MFTT cells need it

    meta = {
        "format": str(WEIGHTS_FORMAT),
        "cell_index": str(int(index)),
        "cell_key": str(key),
        "args": args_hash(kwargs) if kwargs is not None else "",
        "kwargs": json.dumps(dict(kwargs or {}), sort_keys=True, default=_jsonable),
        "code": code_version(),
    }
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in weights.items()}
    path = weights_path(weights_dir, index, key)
    atomic_write_bytes(path, save(arrays, metadata=meta))
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def attach_weights(ds: xr.Dataset, experiment: Any, out: str | Path) -> xr.Dataset:
    """Reference the weights files of ``experiment``'s cells found in ``<out>.weights/`` from ``ds.attrs``."""
    wdir = weights_dir_for(out)
    cells: dict[str, str] = {}
    if wdir.is_dir() and not wdir.is_symlink():
        for c in experiment.cells():
            p = weights_path(wdir, c.index, c.key)
            if p.is_file() and not p.is_symlink():
                cells[str(c.index)] = p.name
    if cells:
        ds.attrs["weights"] = json.dumps(
            {"format": WEIGHTS_FORMAT, "dir": wdir.name, "cells": cells}, sort_keys=True
        )
    else:
        ds.attrs.pop("weights", None)
    return ds


def _weights_bad(path: Any, reason: str) -> ValidationError:
    return ValidationError(
        "weights", "trained weights stored with the results", str(path), reason=reason
    )


def weights_index(results: str | Path | xr.Dataset) -> dict[int, str]:
    """Cell index → weights file name, from a results file's (or Dataset's) ``weights`` attribute."""
    ds = results if isinstance(results, xr.Dataset) else open_results(results)
    raw = ds.attrs.get("weights")
    if not raw:
        return {}
    try:
        idx = json.loads(raw)
        cells = {int(k): str(v) for k, v in dict(idx["cells"]).items()}
    except (ValueError, TypeError, KeyError):
        raise _weights_bad("weights", "the index is not valid JSON") from None
    for i, name in cells.items():
        m = _WEIGHTS_NAME.fullmatch(name)
        if m is None or int(m[1]) != i:
            raise _weights_bad(name, f"not the file name of cell {i}")
    return cells


def cell_index(ds: xr.Dataset, cell: int | Mapping[str, Any]) -> int:
    """The flat grid index of ``cell``: an int, or a mapping dim → label (dims of size 1 may be left out)."""
    dims = list(ds["status"].dims)
    shape = [ds.sizes[d] for d in dims]
    total = int(np.prod(shape)) if shape else 1
    if isinstance(cell, bool) or not isinstance(cell, int | np.integer | Mapping):
        raise ValidationError("cell", "a cell index or a mapping dim -> label", type(cell).__name__)
    if not isinstance(cell, Mapping):
        if not 0 <= int(cell) < total:
            raise ValidationError("cell", f"an index in [0, {total - 1}]", cell)
        return int(cell)
    unknown = sorted(set(cell) - set(dims))
    if unknown:
        raise ValidationError(f"cell.{unknown[0]}", f"one of the grid dims {dims}", "unknown dim")
    pos = []
    for d, n in zip(dims, shape, strict=True):
        labels = [v.item() if hasattr(v, "item") else v for v in ds[d].values]
        if d not in cell:
            if n != 1:
                raise ValidationError(f"cell.{d}", f"one of {labels}", "missing")
            pos.append(0)
            continue
        want = cell[d]
        hits = [i for i, v in enumerate(labels) if v == want or str(v) == str(want)]
        if not hits:
            raise ValidationError(f"cell.{d}", f"one of {labels}", want)
        pos.append(hits[0])
    return int(np.ravel_multi_index(pos, shape)) if shape else 0


def _weights_file(
    results: str | Path, cell: int | Mapping[str, Any], ds: xr.Dataset | None
) -> tuple[Path, int]:
    path = Path(results)
    ds = open_results(path) if ds is None else ds
    index = cell_index(ds, cell)
    files = weights_index(ds)
    if index not in files:
        raise _weights_bad(
            f"{path.name} cell {index}",
            "no trained weights for this cell (its policy is not an MFTT, it failed, or it did not finish)",
        )
    wdir = weights_dir_for(path)
    f = wdir / files[index]
    if wdir.is_symlink() or f.is_symlink() or not f.is_file():
        raise _weights_bad(f, "missing, or not a plain file")
    if f.stat().st_size > MAX_WEIGHTS_BYTES:
        raise _weights_bad(f, f"larger than {MAX_WEIGHTS_BYTES} bytes")
    return f, index


def weights_metadata(
    results: str | Path, cell: int | Mapping[str, Any], *, ds: xr.Dataset | None = None
) -> dict[str, Any]:
    """The metadata of a cell's weights file: ``cell_index``, ``cell_key``, ``kwargs`` (the play arguments),
    ``code`` (the code version that trained it), ``file``. ``ds``: the results already opened (faster)."""
    from safetensors import safe_open  # optional-weight import: safetensors only for stored weights

    f, index = _weights_file(results, cell, ds)
    try:
        with safe_open(str(f), framework="numpy") as sf:
            meta = dict(sf.metadata() or {})
    except Exception as e:  # a damaged file: one line
        raise _weights_bad(f, f"{type(e).__name__}: unreadable safetensors") from None
    try:
        kwargs = json.loads(meta.get("kwargs", "{}"))
    except ValueError:
        raise _weights_bad(f, "metadata kwargs are not JSON") from None
    if meta.get("cell_index") != str(index) or not isinstance(kwargs, dict):
        raise _weights_bad(f, f"metadata of another cell ({meta.get('cell_index')!r})")
    return {
        "cell_index": index,
        "cell_key": meta.get("cell_key", ""),
        "kwargs": kwargs,
        "code": meta.get("code", ""),
        "file": f,
    }


def _tensors(f: Path) -> dict[str, Any]:
    from safetensors.torch import (
        load_file,
    )  # optional-weight import: safetensors only for stored weights

    try:
        return load_file(str(f), device="cpu")
    except Exception as e:  # a damaged file: one line
        raise _weights_bad(f, f"{type(e).__name__}: unreadable safetensors") from None


def load_weights(
    results: str | Path, cell: int | Mapping[str, Any], *, ds: xr.Dataset | None = None
) -> dict[str, Any]:
    """The trained parameters of ``cell`` of the results file ``results``: ``{"agent.<j>.<k>": tensor}``.

    Read with ``safetensors.torch.load_file`` (tensors only: nothing in the file is executed). ``cell`` is
    the flat grid index or a mapping dim → label (``{"seed": 1}`` when the other dims have one label);
    ``ds``: the results already opened (``open_results``), to skip reading them again.
    """
    return _tensors(weights_metadata(results, cell, ds=ds)["file"])


def load_trained_game(
    results: str | Path, cell: int | Mapping[str, Any], *, ds: xr.Dataset | None = None
):
    """The cell's game rebuilt as ``agents.play`` built it (same scenario, Λ, law, seed), holding the trained
    parameters of ``load_weights``. Returns ``(game, kwargs)``."""
    meta = weights_metadata(results, cell, ds=ds)
    kw = meta["kwargs"]
    state = _tensors(meta["file"])
    if "scenario" not in kw:
        raise _weights_bad(meta["file"], "metadata without a scenario")
    _, _, game = CellSpec.of(kw, device="cpu").build()
    used = set()
    with torch.no_grad():
        for j in range(game.n_agents):
            for k, p in enumerate(game.parameters_of(j)):
                name = f"agent.{j}.{k}"
                t = state.get(name)
                if t is None or tuple(t.shape) != tuple(p.shape):
                    got = "missing" if t is None else tuple(t.shape)
                    raise _weights_bad(
                        meta["file"], f"{name}: expected shape {tuple(p.shape)}, got {got}"
                    )
                p.copy_(t.to(dtype=p.dtype))
                used.add(name)
    extra = sorted(set(state) - used)
    if extra:
        raise _weights_bad(meta["file"], f"unexpected tensor {extra[0]}")
    return game, kw


def attention_maps(game: Any, agent: int, time_index: int | None = None) -> dict[str, Any]:
    """What agent ``agent``'s MFTT attends to in ``game``, on the tokens it reads when it plays.

    Differential games: the agent's observation at the rollout's time step ``time_index`` (default: the
    first) with the time appended, as ``agents.agent.MFTTPolicy`` reads it; Cournot's MFTT firms: the first
    market's (price, quantity) history window. Returns ``maps`` [depth times, heads, D, D] (row: query
    token, column: key token), ``depth_times`` (the transformer's depth times of the maps), ``token`` (what a
    token is: "particle", "agent", "window step"), ``times`` (the rollout's time grid, or []), ``time``.
    """

    j = int(agent)
    batched = (
        False  # tokens carry the model's own batch axis (a population's shared MFTT: batch (1,))
    )
    if not 0 <= j < game.n_agents:
        raise ValidationError("agent", f"an agent in [0, {game.n_agents - 1}]", agent)
    times: list[float] = []
    t_shown = None
    if hasattr(game, "models") and hasattr(game, "tokens"):  # Cournot's MFTT firms
        model, tokens, token = game.models[j], game.tokens[0], "window step"
    elif isinstance(
        getattr(game, "policy", None), MFTTPopulationPolicy
    ):  # population j's shared MFTT
        states: list = []
        with torch.no_grad():
            game.agent_costs(states=states)
        times = [float(t) for t in game.times.cpu()]
        k = 0 if time_index is None else int(time_index)
        if not 0 <= k < len(times):
            raise ValidationError("time_index", f"a time step in [0, {len(times) - 1}]", time_index)
        x = states[k]  # [R, K, N, d]
        law = game.law(x)
        m = law.mean[0, j]  # [d]
        sample = law.sample[0, j]  # [S, d]
        obs = torch.cat(  # agent 0 of the population, then the agents it attends to (as the policy reads them)
            [
                torch.cat([x[0, j, :1] - m, m[None]], -1),
                torch.cat([sample - m, m.expand_as(sample)], -1),
            ]
        )
        t_shown = times[k]
        tt = torch.full(obs.shape[:-1] + (1,), t_shown, dtype=obs.dtype, device=obs.device)
        model, tokens = (
            game.policy.nets[j].model,
            torch.cat([obs, tt], -1)[None],
        )  # the model's batch (1)
        batched = True
        token = "agent (0: the agent itself, then its sampled agents)"
    else:
        agents_ = getattr(game, "agents", None)
        policy = agents_[j].policy if agents_ else None
        if not isinstance(policy, MFTTPolicy) or not hasattr(game, "simulate"):
            raise ValidationError(
                "policy",
                "an agent MFTT reading tokens (a differential game or Cournot)",
                type(policy).__name__ if policy is not None else type(game).__name__,
            )
        with torch.no_grad():
            xs, _ = game.simulate(return_states=True)
        grid = game.times
        times = [float(t) for t in grid.cpu()]
        k = 0 if time_index is None else int(time_index)
        if not 0 <= k < len(times):
            raise ValidationError("time_index", f"a time step in [0, {len(times) - 1}]", time_index)
        t = grid[k]
        with torch.no_grad():
            obs = game.stack.run(lambda: game.observe(t, xs[k]))[j]  # [P_obs, d_obs]
        tt = torch.full(obs.shape[:-1] + (1,), float(t), dtype=obs.dtype, device=obs.device)
        model, tokens, t_shown = policy.model, torch.cat([obs, tt], -1), float(t)
        default_obs = getattr(game, "observe_all", None)
        token = (
            "particle"
            if game.observe == default_obs
            else ("agent" if obs.shape[0] == game.n_agents else "token")
        )
    with torch.no_grad():
        _, info = model(tokens, return_info=True)
    maps = np.stack([np.asarray(w.detach().cpu().numpy(), dtype=float) for w in info["attention"]])
    if batched:
        maps, tokens = maps[:, 0], tokens[0]
    if maps.ndim == 3:  # one head: [depth, D, D]
        maps = maps[:, None]
    depth = np.asarray(info["times"].detach().cpu().numpy(), dtype=float)
    return {
        "maps": maps,
        "depth_times": depth[: maps.shape[0]],
        "token": token,
        "times": times,
        "time": t_shown,
        "tokens": np.asarray(tokens.detach().cpu().numpy(), dtype=float),
    }


def population_costs(game: Any) -> np.ndarray:
    """Every agent's cost in a population game, ``[populations, agents]`` (mean over the noise replicas)."""
    if not hasattr(game, "agent_costs"):
        raise ValidationError("game", "a population game (PopulationGame)", type(game).__name__)
    with torch.no_grad():
        J = game.agent_costs()  # [R, K, N]
    return np.asarray(J.mean(0).detach().cpu().numpy(), dtype=float)


# ---- progress of running cells -------------------------------------------------------------
PROGRESS_INTERVAL = 0.5  # seconds between two writes of a running cell's progress file
_PROGRESS_POINTS = 400  # Λ-cost curve points kept in the file (thinned evenly beyond)


def progress_path(parts_dir: str | Path, index: int) -> Path:
    return Path(parts_dir) / f"progress-{index:06d}.json"


class CellProgress:
    """``progress(step, total, costs)`` for ``agents.play``: writes ``<parts>/progress-<index>.json`` at most
    every ``PROGRESS_INTERVAL`` s (and at the last step): step, total, the total Λ-cost per step, times.

    It only observes; a file that cannot be written is skipped (the cell goes on)."""

    def __init__(
        self, parts_dir: str | Path, index: int, key: str = "", *, interval: float | None = None
    ):

        self._time = time.time
        self.path = progress_path(parts_dir, index)
        self.index, self.key = int(index), str(key)
        self.interval = PROGRESS_INTERVAL if interval is None else float(interval)
        self.started = self._time()
        self.last = 0.0
        self.step, self.total = 0, 0
        self.curve: list[float] = []
        self.writes = 0

    def __call__(self, step: int, total: int, costs: Any) -> None:
        c = np.asarray(costs, dtype=float)
        self.step, self.total = int(step), int(total)
        self.curve.append(float(c.sum()) if c.ndim <= 1 else float(c.sum(-1).mean()))
        now = self._time()
        if now - self.last >= self.interval or self.step >= self.total:
            self.last = now
            self.flush()

    def flush(self) -> None:
        curve = np.asarray(self.curve, dtype=float)
        steps = np.arange(1, len(curve) + 1)
        if len(curve) > _PROGRESS_POINTS:
            keep = np.unique(np.linspace(0, len(curve) - 1, _PROGRESS_POINTS).round().astype(int))
            curve, steps = curve[keep], steps[keep]
        data = {
            "cell": self.index,
            "key": self.key,
            "step": self.step,
            "total": self.total,
            "steps": steps.tolist(),
            "cost": [c if np.isfinite(c) else None for c in curve.tolist()],
            "started": self.started,
            "updated": self._time(),
            "pid": os.getpid(),
        }
        try:
            atomic_write_bytes(self.path, json.dumps(data).encode())
            self.writes += 1
        except OSError:  # progress is a courtesy: the cell goes on
            pass

    def close(self) -> None:
        """The cell has finished: its progress file goes (its part file holds the result)."""
        self.path.unlink(missing_ok=True)


def read_progress(parts_dir: str | Path) -> list[dict[str, Any]]:
    """The progress of the running cells under ``parts_dir``, by cell index (unreadable files skipped)."""
    d = Path(parts_dir)
    out = []
    if not d.is_dir() or d.is_symlink():
        return out
    for f in sorted(d.glob("progress-*.json")):
        try:
            if f.is_symlink() or f.stat().st_size > 2**20:
                continue
            p = json.loads(f.read_text())
            p = {
                "cell": int(p["cell"]),
                "step": int(p["step"]),
                "total": int(p["total"]),
                "steps": [int(s) for s in p.get("steps", [])],
                "cost": [float("nan") if c is None else float(c) for c in p.get("cost", [])],
                "started": float(p.get("started", 0.0)),
                "updated": float(p.get("updated", 0.0)),
            }
        except (OSError, ValueError, TypeError, KeyError):
            continue
        out.append(p)
    return sorted(out, key=lambda p: p["cell"])
