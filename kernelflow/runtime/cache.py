"""The persistent compilation cache: generated modules on disk, compiled code in numba's own cache.

An entry is the generated module ``<dir>/numba/kf_<key>.py``; numba's ``cache=True`` keeps the
machine code of its kernels next to it in ``__pycache__`` (that only works because the module is
imported from a real file and registered in ``sys.modules`` before it executes). The key hashes the
generated source (a function of the IR text and of this compiler), the backend, the versions of
kernelflow/numba/llvmlite/numpy/Python, the helper module's source and the host CPU (name and
features): a second process with the same graph imports the file and numba loads every kernel from
its cache, compiling nothing.

* ``KERNELFLOW_CACHE_DIR`` moves the cache (default ``~/.cache/kernelflow``); ``KERNELFLOW_CACHE=0``
  turns it off (modules are then built in memory and compiled every time).
* Writes are atomic: the module is written to a temporary file and linked into place; a file that
  already exists is never rewritten (numba's cache is keyed on the file's timestamp), so two processes
  compiling the same graph at once both succeed and share the result.
* A corrupt entry (a module whose text differs from what it must be, or numba cache files that fail to
  load) is reported once per entry as a ``RuntimeWarning``, deleted, and rebuilt.

* A new module's kernels are compiled by several processes (``KERNELFLOW_COMPILE_JOBS``, default:
  the CPUs this process may use; forked only from a single-threaded process): each child compiles
  kernels from a shared queue into numba's cache, and this process loads them from there
  (``_import_compiling_in_parallel``).

Finding a module by its source needs the whole pass pipeline; ``graph_cache.py`` keeps a second kind
of entry, keyed by the input graph's text, that holds the source, so a warm process runs no pass.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import linecache
import os
import struct
import sys
import tempfile
import threading
import types
import warnings
from pathlib import Path

from numba.core.errors import NumbaError


_WARNED: set[str] = set()


def cache_enabled() -> bool:
    return os.environ.get("KERNELFLOW_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    root = os.environ.get("KERNELFLOW_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "kernelflow"


@functools.lru_cache(maxsize=None)
def environment_key() -> str:
    """Everything besides the source that decides what machine code a module compiles to."""
    import llvmlite
    import numba
    import numpy
    from llvmlite import binding as llvm

    from importlib import metadata

    from ..codegen.numba import helpers
    helper_source = Path(helpers.__file__).read_bytes()
    try:
        cpu = llvm.get_host_cpu_name() + ":" + llvm.get_host_cpu_features().flatten()
    except Exception:  # pragma: no cover - very old llvmlite
        cpu = "unknown-cpu"
    try:
        version = metadata.version("kernelflow")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "source"
    parts = [f"kernelflow={version}", f"numba={numba.__version__}",
             f"llvmlite={llvmlite.__version__}", f"numpy={numpy.__version__}",
             f"python={sys.version_info[:3]}", f"cpu={cpu}",
             "helpers=" + hashlib.sha256(helper_source).hexdigest()]
    return "\n".join(parts)


def module_key(source: str, backend: str = "numba") -> str:
    h = hashlib.sha256()
    h.update(backend.encode())
    h.update(environment_key().encode())
    h.update(source.encode())
    return h.hexdigest()[:40]


def _warn_once(key: str, message: str):
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _remove_entry(path: Path):
    """Delete a module file and numba's cache files for it."""
    stem = path.stem
    for p in [path, *path.parent.glob(f"__pycache__/{stem}.*")]:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def atomic_create(path: Path, content: str | bytes) -> None:
    """Create ``path`` with ``content`` atomically; if another process created it first, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def _import_file(name: str, path: Path, source: str | None = None) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache locator needs the module registered before it runs
    try:
        if source is None:
            spec.loader.exec_module(module)
        else:
            exec(_module_code(path, source), module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_CODE_MAGIC = b"kernelflow-code 1 " + importlib.util.MAGIC_NUMBER


def _module_code(path: Path, source: str) -> types.CodeType:
    """The compiled code of a generated module, kept next to numba's cache files
    (``__pycache__/<stem>.kfc``: a header naming the Python bytecode version and the source's hash,
    then the marshalled code). Python's own .pyc would do the same, but it is not written under
    PYTHONDONTWRITEBYTECODE (set on these machines) and compiling a training step's module source
    takes tens of milliseconds of every warm start. A file that does not match is replaced."""
    import marshal  # noqa: PLC0415
    code_path = path.parent / "__pycache__" / f"{path.stem}.kfc"
    header = _CODE_MAGIC + hashlib.sha256(source.encode("utf-8")).digest()
    try:
        data = code_path.read_bytes()
        if data.startswith(header):
            code = marshal.loads(data[len(header):])
            if isinstance(code, types.CodeType) and code.co_filename == str(path):
                return code
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = compile(source, str(path), "exec", dont_inherit=True)
    try:  # replaced, not kept, when it exists: it did not match (every writer writes the same bytes)
        code_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{code_path.stem}.", suffix=".tmp", dir=code_path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header + marshal.dumps(code))
            os.replace(tmp, code_path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # no code cache: the next process compiles the source again
    return code


def compile_jobs() -> int:
    """How many processes compile the kernels of a new module: ``KERNELFLOW_COMPILE_JOBS``, by default
    the CPUs this process may run on."""
    text = os.environ.get("KERNELFLOW_COMPILE_JOBS", "").strip()
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            _warn_once("jobs", f"kernelflow: KERNELFLOW_COMPILE_JOBS={text!r} is not a number; using 1")
            return 1
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    """Forking is safe here only on Linux (macOS system libraries do not survive a fork without exec)
    and in a single-threaded process: another thread could hold a lock (numba's compiler lock,
    llvmlite's) that the child would then wait on forever."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


def _import_compiling_in_parallel(name: str, path: Path, jobs: int, source: str) -> tuple[types.ModuleType, dict]:
    """Import a NEW module (no numba cache yet) with its kernels compiled by ``jobs`` processes.

    numba compiles one function at a time under a global lock, and mostly in Python, so threads do
    not help; processes do, because each kernel's machine code goes to numba's disk cache (one index
    file per function). The module is imported with every kernel deferred, then the process forks
    ``jobs - 1`` children; all of them take kernels from one queue (a pipe of kernel numbers, most
    expensive first) and compile them, which writes the cache. When the children are done, this
    process loads their kernels from the cache. A kernel a child did not finish (it failed or died)
    is simply compiled here: the result never depends on the children. Kernels with ``prange`` are
    compiled here only (a forked child must not start the threading layer of its parent)."""
    from ..codegen.numba.module import compile_deferred, deferred_kernels  # noqa: PLC0415
    try:
        with deferred_kernels() as deferred:
            module = _import_file(name, path, source)
        queue = sorted((i for i, k in enumerate(deferred) if not k.parallel), key=lambda i: -deferred[i].cost)
        compiled_here: set[int] = set()
        children = []
        if len(queue) >= 2 and len(queue) * 4 < 65536:  # the whole queue fits in the pipe's buffer
            from numba.core.registry import cpu_target  # noqa: PLC0415
            cpu_target.target_context.refresh()  # numba's lazy set-up, once, before the children copy it
            cpu_target.typing_context.refresh()
            read_end, write_end = os.pipe()
            os.write(write_end, b"".join(struct.pack("<I", i) for i in queue))
            os.close(write_end)
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                for _ in range(min(jobs, len(queue)) - 1):
                    pid = os.fork()
                    if pid == 0:  # the child: compile from the queue, leave without running any exit code
                        status = 1
                        try:
                            _compile_from_queue(read_end, deferred, set())
                            status = 0
                        finally:
                            try:
                                sys.stderr.flush()
                            finally:
                                os._exit(status)
                    children.append(pid)
                for i, kernel in enumerate(deferred):
                    if kernel.parallel:
                        compile_deferred(kernel)
                        compiled_here.add(i)
                _compile_from_queue(read_end, deferred, compiled_here)
            finally:
                os.close(read_end)
                for pid in children:
                    os.waitpid(pid, 0)
        from_children = 0
        for i, kernel in enumerate(deferred):
            if i not in compiled_here:
                compile_deferred(kernel)  # from the cache when a child compiled it
                if children:
                    from_children += _count_as_compiled(kernel)
    except BaseException:
        sys.modules.pop(name, None)  # never leave a module with uncompiled kernels behind
        raise
    return module, {"compile_jobs": 1 + len(children), "compiled_in_children": from_children}


def _compile_from_queue(read_end: int, deferred: list, done: set) -> None:
    from ..codegen.numba.module import compile_deferred  # noqa: PLC0415
    while True:
        record = os.read(read_end, 4)  # whole records: one writer, before any reader existed
        if len(record) < 4:
            return  # the queue is empty (and its write end closed)
        (i,) = struct.unpack("<I", record)
        compile_deferred(deferred[i])
        done.add(i)


def _count_as_compiled(kernel) -> int:
    """1 if this process loaded ``kernel`` from numba's cache (a child compiled it for this module):
    ``compile_graph`` reports it as compiled, not as a cache hit. Numba's statistics are left alone."""
    return int(any(n > 0 for n in kernel.dispatcher.stats.cache_hits.values()))


def _exec_in_memory(name: str, source: str) -> types.ModuleType:
    filename = f"<kernelflow {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def load_module(source: str, backend: str = "numba") -> tuple[types.ModuleType, dict]:
    """Import the generated module ``source`` (from the disk cache when enabled).

    Returns (module, info) with info = {key, path, on_disk: whether the file already existed}.
    """
    key = module_key(source, backend)
    name = f"kf_{key}"
    if name in sys.modules:
        module = sys.modules[name]
        return module, {"key": key, "path": getattr(module, "__file__", None), "on_disk": True,
                        "in_process": True}
    if not cache_enabled():
        return _exec_in_memory(name, source), {"key": key, "path": None, "on_disk": False,
                                               "in_process": False}
    path = cache_dir() / backend / f"{name}.py"
    on_disk = path.exists()
    if on_disk:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
        if text != source:
            _warn_once(name, f"kernelflow: cache entry {path} is corrupt (its text differs from the "
                             f"generated module); rebuilding it")
            _remove_entry(path)
            on_disk = False
    try:
        if not path.exists():
            atomic_create(path, source)
    except OSError as e:
        _warn_once(f"dir:{path.parent}", f"kernelflow: cannot write the cache in {path.parent} ({e}); "
                                         f"compiling in memory")
        return _exec_in_memory(name, source), {"key": key, "path": None, "on_disk": False,
                                               "in_process": False}
    jobs = compile_jobs() if not on_disk else 1
    parallel_info: dict = {}
    try:
        if jobs >= 2 and _can_fork():
            module, parallel_info = _import_compiling_in_parallel(name, path, jobs, source)
        else:
            module = _import_file(name, path, source)
    except NumbaError:
        _remove_entry(path)
        raise  # a bug in the generated code, not a corrupt entry: rebuilding would not help
    except Exception as e:  # a truncated numba cache file, a half-written module ...
        _warn_once(name, f"kernelflow: cache entry {path} failed to load ({type(e).__name__}: {e}); "
                         f"rebuilding it")
        _remove_entry(path)
        atomic_create(path, source)
        module = _import_file(name, path, source)
        on_disk = False
    return module, {"key": key, "path": str(path), "on_disk": on_disk, "in_process": False, **parallel_info}
