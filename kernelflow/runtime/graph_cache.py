"""The graph-keyed half of the persistent cache: skip the pass pipeline in a warm process.

``cache.py`` keys a module by its generated source, so finding it needs the whole pipeline (optimize,
fuse, memory plan, codegen: 3 s for an 8000-node training step). This module keys an entry by what the
pipeline starts from instead: the input graph's text, the backend, the compile options, the environment
(``cache.environment_key``) and a hash of the compiler's own source (``ir``, ``passes``, ``codegen``,
``runtime``), so editing a pass invalidates every entry. An entry holds what the ``Executable`` needs
to run: the generated module source, the driver's bindings, the pool's slot sizes, the number of steps
and the kernel names (the module itself then comes through ``cache.load_module``, and numba's cache).
Everything else (optimized graph, fusion and memory plans, kernel descriptions) is rebuilt lazily by
the executable when inspected.

File format: ``<dir>/graphs/<backend>/g_<key>.kfg`` = one header line ``kernelflow-graph-entry <format>
<sha256 of the rest>`` then a pickle of a dict of plain values (tuples, ints, strings, numpy arrays,
``DType`` by name). A header, checksum, format or key mismatch, or an unpickling error, makes the entry
corrupt or stale: reported once as a ``RuntimeWarning``, deleted, rebuilt. Writes are atomic and never
replace an existing file, like the modules'.
"""
from __future__ import annotations

import copyreg
import functools
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.types import DType, dtype_from_name
from . import cache

FORMAT = 1
MAGIC = b"kernelflow-graph-entry"
FIELDS = ("source", "bindings", "slot_bytes", "n_steps", "kernel_names")


@functools.lru_cache(maxsize=None)
def compiler_hash() -> str:
    """sha256 of every source file of the layers that decide what a graph compiles to."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for layer in ("ir", "passes", "codegen", "runtime"):
        for path in sorted((root / layer).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def entry_key(graph_text: str, backend: str, options: str) -> str:
    """The full sha256 of everything an entry depends on (its file name uses the first 40 digits)."""
    h = hashlib.sha256()
    for part in (f"format={FORMAT}", backend, options, cache.environment_key(), compiler_hash(), graph_text):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def entry_path(key: str, backend: str) -> Path:
    return cache.cache_dir() / "graphs" / backend / f"g_{key[:40]}.kfg"


# -- pickling: plain values only; DTypes stay the registry's singletons; arrays keep their flags ---------
def _array(data: bytes, dtype: str, shape: tuple, writeable: bool) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
    a.flags.writeable = writeable
    return a


def _reduce_array(a: np.ndarray):
    if a.dtype.hasobject:
        raise TypeError("object arrays are not cached")
    return _array, (np.ascontiguousarray(a).tobytes(), a.dtype.str, a.shape, bool(a.flags.writeable))


def _refuse(x):
    raise TypeError(f"a {type(x).__name__} in a graph cache entry (convert it to plain values first)")


def _dumps(entry: dict) -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[DType] = lambda d: (dtype_from_name, (d.name,))
    pickler.dispatch_table[np.ndarray] = _reduce_array
    for cls in (Graph, Node, Value):  # would drag a whole graph in
        pickler.dispatch_table[cls] = _refuse
    pickler.dump(entry)
    return out.getvalue()


# -- load / store ----------------------------------------------------------------------------------------
def load(key: str, backend: str) -> dict | None:
    """The entry for ``key``, or None (missing, or corrupt/stale: then warned about once and deleted)."""
    path = entry_path(key, backend)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    problem = None
    header, _, body = data.partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC:
        problem = "no valid header"
    elif parts[1] != str(FORMAT).encode():
        problem = f"format {parts[1].decode(errors='replace')}, expected {FORMAT}"
    elif parts[2] != hashlib.sha256(body).hexdigest().encode():
        problem = "checksum mismatch"
    else:
        try:
            entry = pickle.loads(body)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad entry
            problem = f"{type(e).__name__}: {e}"
        else:
            if not isinstance(entry, dict) or entry.get("key") != key or any(f not in entry for f in FIELDS):
                problem = "its contents do not match its key"
            else:
                return entry
    cache._warn_once(str(path), f"kernelflow: graph cache entry {path} is corrupt or stale ({problem}); "
                                f"rebuilding it")
    try:
        path.unlink()
    except OSError:
        pass
    return None


def store(key: str, backend: str, entry: dict) -> None:
    """Write the entry (atomically; an existing file, another process's, is kept)."""
    path = entry_path(key, backend)
    try:
        body = _dumps({"key": key, **{f: entry[f] for f in FIELDS}})
    except (TypeError, pickle.PicklingError, AttributeError) as e:
        cache._warn_once(f"pickle:{key}", f"kernelflow: cannot store a graph cache entry ({e}); the next "
                                          f"process will run the passes again")
        return
    header = b" ".join([MAGIC, str(FORMAT).encode(), hashlib.sha256(body).hexdigest().encode()])
    try:
        cache.atomic_create(path, header + b"\n" + body)
    except OSError as e:
        cache._warn_once(f"dir:{path.parent}", f"kernelflow: cannot write the cache in {path.parent} ({e})")
