"""conv3x3's GPU "auto": per layer shape and job, the rung that ran fastest where it was
measured, like the CPU's auto (conv_cpu.py), but from data rather than from rules.

The table is ``auto.json`` in the kernels folder (``tinyvgg.cuda.source_dir()``), written by
``benchmarks/bench_gpu.py`` from its conv ladder: for each GPU it ran on (by the name the
driver gives it), the commit, the batch and, per VGG-16 layer shape and job ("fwd": the
forward pass, "dx": the input gradient, "dw": the weight gradient), the fastest kernel
among those that compute at float32 accuracy (the strict rungs and the 3xTF32 ones), with
its time::

    {"format": 1, "devices": {"NVIDIA H200": {"commit": "...", "batch": 64, "entries": [
        {"job": "fwd", "c_in": 64, "c_out": 64, "size": 224, "kernel": "tile128",
         "ms": 3.1}, ...]}}}

A layer takes the entry of its job whose shape is nearest (in log scale, over input
channels, output channels and pixels). On a GPU the table does not name, and for float64
(the table is measured in float32), auto runs the default rungs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .. import backend, cuda

TABLE_NAME = "auto.json"
TABLE_FORMAT = 1
MAX_TABLE_BYTES = 1 << 20   # a table holds tens of entries per GPU: refuse anything huge
JOBS = ("fwd", "dx", "dw")


class AutoTableError(ValueError):
    """auto.json is not a table this version reads."""


def table_path() -> Path:
    return cuda.source_dir() / TABLE_NAME


def read_table(kernels_of_job, path=None) -> dict:
    """The table at ``path`` (default :func:`table_path`), checked against the kernels it
    may name (job -> names); {} when there is none."""
    path = Path(path) if path is not None else table_path()
    if not path.is_file():
        return {}
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise AutoTableError(f"conv3x3 auto: {path} is {size} bytes, more than the "
                             f"{MAX_TABLE_BYTES} a kernel table can be")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AutoTableError(f"conv3x3 auto: {path} is not JSON: {error}") from None
    check_table(table, str(path), kernels_of_job)
    return table


def check_table(table, where: str, kernels) -> None:
    """Refuse a table that is not ``{"format": 1, "devices": {...}}`` with entries naming
    a job, a shape and one of ``kernels[job]`` (the float32-accurate rungs of the ladders)."""
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or \
            not isinstance(table.get("devices"), dict):
        raise AutoTableError(f"conv3x3 auto: {where}: expected a table of format "
                             f"{TABLE_FORMAT} with a 'devices' object")
    for device, measured in table["devices"].items():
        entries = measured.get("entries") if isinstance(measured, dict) else None
        if not isinstance(entries, list):
            raise AutoTableError(f"conv3x3 auto: {where}: {device!r} has no list of entries")
        for entry in entries:
            ok = (isinstance(entry, dict) and entry.get("job") in JOBS
                  and all(isinstance(entry.get(k), int) and entry[k] > 0
                          for k in ("c_in", "c_out", "size")))
            if not ok or entry.get("kernel") not in kernels[entry["job"]]:
                raise AutoTableError(f"conv3x3 auto: {where}: {device!r} has an entry "
                                     f"that is not (job, c_in, c_out, size, float32-accurate "
                                     f"kernel): "
                                     f"{entry!r}")


_tables = {}   # "table": the table read; (device, job, c_in, c_out, h, w): the kernel picked
_device_names = {}


def device_name() -> str:
    """The current GPU's name as its driver gives it ("NVIDIA H200"), asked once per GPU."""
    cupy = backend.cupy_module()
    device = cupy.cuda.Device().id
    if device not in _device_names:
        name = cupy.cuda.runtime.getDeviceProperties(device)["name"]
        _device_names[device] = name.decode() if isinstance(name, bytes) else str(name)
    return _device_names[device]


def entries_for(device: str, kernels_of_job) -> list:
    """The table's entries for ``device`` (read once per process and checked against
    ``kernels_of_job``), [] when it has none."""
    if "table" not in _tables:
        _tables["table"] = read_table(kernels_of_job)
    measured = _tables["table"].get("devices", {}).get(device)
    return measured["entries"] if measured else []


def nearest_kernel(entries, job: str, c_in: int, c_out: int, h: int, w: int):
    """The kernel of the entry of ``job`` nearest to the layer, or None without one."""
    def distance(e):
        return (abs(math.log(c_in / e["c_in"])) + abs(math.log(c_out / e["c_out"]))
                + abs(math.log(h * w / e["size"] ** 2)))
    of_job = [e for e in entries if e["job"] == job]
    return min(of_job, key=distance)["kernel"] if of_job and min(c_in, c_out, h, w) > 0 \
        else None


def picked_kernel(job: str, c_in: int, c_out: int, h: int, w: int, kernels_of_job):
    """:func:`nearest_kernel` of this GPU's entries for the layer, or None: looked up once
    per GPU, job and layer shape, since every convolution of a step asks."""
    key = (device_name(), job, c_in, c_out, h, w)
    if key not in _tables:
        _tables[key] = nearest_kernel(entries_for(key[0], kernels_of_job), *key[1:])
    return _tables[key]


def reset() -> None:
    """Forget the table read and the kernels picked from it (after the benchmark rewrote
    it, or in tests)."""
    _tables.clear()


def table_from_rows(rows, kernels_of_job, max_error: float) -> list:
    """The entries for one device from the bench's conv rows: per row and job, the fastest
    of ``kernels_of_job[job]`` whose error against the strict float32 reference was at
    most ``max_error``."""
    entries = []
    for row in rows:
        for job in row["jobs"]:
            errors = row.get("error", {}).get(job, {})
            times = {k: ms for k, ms in row["ms"].get(job, {}).items()
                     if k in kernels_of_job[job] and errors.get(k, 0.0) <= max_error}
            if times:
                kernel = min(times, key=times.get)
                entries.append(dict(job=job, c_in=row["c_in"], c_out=row["c_out"],
                                    size=row["size"], kernel=kernel, ms=times[kernel]))
    return entries
