"""`python -m bench.warm_compile --only W5,W6 ...`: kernelflow's first-call times in a fresh process.

Started twice by bench.run with one new KERNELFLOW_CACHE_DIR: the first time the directory is empty (cold:
trace + every pass + numba, in a process where no peer library is loaded, as a user's program would be), the
second time it is full (warm: compile from the persistent cache). Prints one JSON line: import time, trivial start-up, and per workload
the first-call time (or why it could not run).
"""
from __future__ import annotations

import argparse
import json
import time

from . import environment


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warm_compile")
    parser.add_argument("--only", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    environment.configure(args.threads, cache_dir=None)   # the cache directory is inherited

    start = time.perf_counter()
    import kernelflow as kf
    import numpy as np
    import_s = time.perf_counter() - start

    from .harness import _reason
    from .peers import configure as configure_peers
    from .workloads import BY_KEY
    configure_peers(args.threads, args.backend)

    start = time.perf_counter()
    kf.jit(lambda x: x * 2 + 1, backend=args.backend)(np.arange(4, dtype=np.float32))
    startup_s = time.perf_counter() - start

    workloads = {}
    for key in args.only.split(","):
        workload = BY_KEY[key]
        try:
            prepared = workload.builders["kernelflow"](workload.make_data(args.quick))
            start = time.perf_counter()
            prepared.call()
            workloads[key] = {"first_call_s": time.perf_counter() - start}
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            workloads[key] = {"status": f"unavailable: {_reason(exc)}"}
    print(json.dumps({"import_s": import_s, "startup": f"{startup_s:.2f} s", "workloads": workloads}))


if __name__ == "__main__":
    main()
