"""The machine and software a run measured: CPU, cores, caches, memory, library versions, git commit."""
from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

PACKAGES = ("numpy", "scipy", "numba", "llvmlite", "torch", "jax", "jaxlib", "matplotlib", "kernelflow")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile") if f in flags]
    except OSError:
        pass
    return []


def _caches() -> dict[str, str]:
    caches = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            caches[f"L{level}"] = size
    return caches


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _blas() -> str | None:
    try:
        import numpy as np
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        return None


def _blas_kernels() -> str | None:
    """The kernels numpy's OpenBLAS runs ("Haswell": AVX2, "SkylakeX": AVX-512, ...), which numpy's and
    kernelflow's GEMMs both use. OpenBLAS picks them when it loads, from the CPU or from OPENBLAS_CORETYPE:
    on our Zen 5 machines the environment pins "Haswell", and the AVX-512 kernels run the training steps'
    GEMMs 1.6x faster, so figures from machines with another setting do not compare.

    Asked by ctypes here rather than through kernelflow (blas.openblas_corename does the same): the suite
    describes the machine before any peer loads, and importing kernelflow then would set its
    OMP_WAIT_POLICY for torch's OpenMP runtime too."""
    try:
        import numpy as np
        libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
                fn = getattr(lib, name, None)
                if fn is not None:
                    fn.restype = ctypes.c_char_p
                    return fn().decode()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return None


def describe() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "caches": _caches(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy_blas": _blas(),
        "blas_kernels": _blas_kernels(),
        "blas_environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS_")},
        "versions": versions,
        "git_commit": _git_commit(),
    }
