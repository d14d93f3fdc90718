"""GPU benchmarks of the Triton backend: ``python -m bench.gpu [--quick] [--out FILE.md]``.

Workloads (issue 6), each timed for kernelflow (backend "triton", inputs already on the device), PyTorch eager
and ``torch.compile`` when a CUDA build of PyTorch is installed:

* fused elementwise chain over 2**26 float32 elements                       -> GB/s
* row softmax and layer_norm over 8192 x 4096 float32                        -> GB/s
* matmul + bias + relu, 4096 x 4096 x 4096, float16 and bfloat16             -> TFLOP/s
* MLP training step (784-1024-1024-10, batch 512) and LeNet-5 training step   -> ms per step

GB/s counts the bytes a perfect kernel moves (inputs read once, outputs written once). The device's peaks are
measured here: copy bandwidth (a device-to-device copy of 1 GiB) and the bf16 rate of ``torch.matmul`` (when
PyTorch has CUDA). Every kernelflow result is checked against numpy before it is timed.
Without an NVIDIA GPU the module prints why and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _sync():
    from kernelflow.runtime.gpu import cuda
    cuda().synchronize()


def _time(fn, reps: int, sync) -> float:
    """Seconds per call: 3 warm-up calls, then the mean of ``reps`` calls between two synchronizations."""
    for _ in range(3):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - start) / reps


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _compile_kf(fn, *args):
    """(kernelflow executable, device inputs, explain text) for ``fn`` on ``args`` (numpy)."""
    from kernelflow.frontend import jit
    from kernelflow.frontend.pytree import flatten
    from kernelflow.runtime.gpu import compile_triton, device_put
    graph = jit(fn).lower(*args).graph
    exe = compile_triton(graph, interpret=False)
    inputs = [device_put(np.asarray(a)) for a in flatten(args)[0]]
    return exe, inputs, exe.explain()


def _check(exe, inputs, fn, args, rtol):
    from kernelflow.frontend.pytree import flatten
    got = [np.asarray(o).astype(np.float64) for o in exe(*inputs)]
    want = [np.asarray(w).astype(np.float64) for w in flatten(fn(*args))[0]]
    for g, w in zip(got, want):
        scale = np.abs(w).max() or 1.0
        err = np.abs(g - w).max() / scale
        if not err <= rtol:
            raise AssertionError(f"kernelflow result differs from numpy: max error {err:.2e} of the largest value")


def run(quick: bool = False) -> list[dict]:
    from kernelflow.frontend import composites as C
    from kernelflow.frontend.transforms import value_and_grad
    from kernelflow.runtime.gpu import cuda, DeviceArray
    torch = _torch_cuda()
    sync = _sync
    reps = 5 if quick else 20
    rng = np.random.default_rng(0)
    rows = []
    scale = 4 if quick else 1

    # device peaks -------------------------------------------------------------------------------------------
    nbytes = (1 << 30) // scale
    src, dst = DeviceArray.empty((nbytes,), np.uint8), DeviceArray.empty((nbytes,), np.uint8)
    t = _time(lambda: cuda().copy(dst.ptr, src.ptr, nbytes), reps, sync)
    copy_bw = 2 * nbytes / t / 1e9
    rows.append({"workload": "device copy (peak bandwidth)", "impl": "cuMemcpyDtoD", "seconds": t,
                 "rate": copy_bw, "unit": "GB/s"})
    matmul_peak = None
    if torch is not None:
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
        t = _time(lambda: torch.matmul(a, a), reps, torch.cuda.synchronize)
        matmul_peak = 2 * 4096 ** 3 / t / 1e12
        rows.append({"workload": "bf16 matmul 4096^3 (peak rate)", "impl": "torch.matmul", "seconds": t,
                     "rate": matmul_peak, "unit": "TFLOP/s"})

    def bench(name, fn, args, bytes_moved=None, flops=None, rtol=1e-4, torch_fn=None):
        exe, inputs, explain = _compile_kf(fn, *args)
        _check(exe, inputs, fn, args, rtol)
        host = "host step" in explain
        impls = [("kernelflow (triton)" + (" [has host steps]" if host else ""), lambda: exe(*inputs), sync)]
        if torch_fn is not None and torch is not None:
            targs = [torch.from_numpy(np.ascontiguousarray(a)).cuda() if isinstance(a, np.ndarray) else a
                     for a in args]
            impls.append(("torch eager", lambda: torch_fn(*targs), torch.cuda.synchronize))
            try:
                compiled = torch.compile(torch_fn)
                impls.append(("torch.compile", lambda: compiled(*targs), torch.cuda.synchronize))
            except Exception as e:  # noqa: BLE001 - a peer that cannot compile is reported, not fatal
                print(f"  torch.compile unavailable for {name}: {e}", file=sys.stderr)
        for impl, call, s in impls:
            t = _time(call, reps, s)
            row = {"workload": name, "impl": impl, "seconds": t}
            if bytes_moved:
                row.update(rate=bytes_moved / t / 1e9, unit="GB/s", of_peak=bytes_moved / t / 1e9 / copy_bw)
            elif flops:
                row.update(rate=flops / t / 1e12, unit="TFLOP/s",
                           of_peak=(flops / t / 1e12 / matmul_peak) if matmul_peak else None)
            rows.append(row)
            print(_format_row(row), flush=True)

    n = (1 << 26) // scale
    x = rng.standard_normal(n).astype(np.float32)
    bench("elementwise chain 2^26 f32", lambda x: np.tanh(x) * np.exp(-x * x) + 0.5 * x, [x], bytes_moved=8 * n,
          torch_fn=lambda x: x.tanh() * (-x * x).exp() + 0.5 * x)

    r, c = 8192 // scale, 4096
    x = rng.standard_normal((r, c)).astype(np.float32)
    bench("softmax 8192x4096 f32", lambda x: C.softmax(x, axis=-1), [x], bytes_moved=8 * r * c,
          torch_fn=lambda x: x.softmax(-1))
    g, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    bench("layer_norm 8192x4096 f32", lambda x, g, b: C.layer_norm(x, g, b), [x, g, b], bytes_moved=8 * r * c,
          rtol=1e-3, torch_fn=lambda x, g, b: __import__("torch").nn.functional.layer_norm(x, (c,), g, b))

    m = 4096 // scale
    try:
        import ml_dtypes
        half_types = [("f16", np.float16), ("bf16", ml_dtypes.bfloat16)]
    except ImportError:
        half_types = [("f16", np.float16)]
    for label, dt in half_types:
        a = (rng.standard_normal((m, 4096)) / 64).astype(dt)
        w = (rng.standard_normal((4096, 4096)) / 64).astype(dt)
        bias = rng.standard_normal(4096).astype(dt)
        bench(f"matmul+bias+relu {m}x4096x4096 {label}", lambda a, w, b: C.relu(a @ w + b), [a, w, bias],
              flops=2 * m * 4096 * 4096, rtol=2e-2,
              torch_fn=lambda a, w, b: __import__("torch").relu(a @ w + b))

    def mlp_step(params, x, y):
        def loss(p):
            h = C.relu(x @ p["w1"] + p["b1"])
            h = C.relu(h @ p["w2"] + p["b2"])
            return C.cross_entropy(h @ p["w3"] + p["b3"], y)
        value, grads = value_and_grad(loss)(params)
        return value, {k: params[k] - 0.01 * grads[k] for k in params}
    sizes = [784, 1024, 1024, 10]
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), 1):
        params[f"w{i}"] = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        params[f"b{i}"] = np.zeros(fan_out, np.float32)
    xb = rng.standard_normal((512, 784)).astype(np.float32)
    yb = rng.integers(0, 10, 512).astype(np.int64)
    bench("MLP training step 784-1024-1024-10 b512", mlp_step, [params, xb, yb], rtol=1e-3)

    def lenet_step(p, x, y):
        def loss(p):
            h = C.max_pool2d(C.relu(C.conv2d(x, p["c1"], p["cb1"], padding=2)), 2)
            h = C.max_pool2d(C.relu(C.conv2d(h, p["c2"], p["cb2"])), 2)
            h = h.reshape(h.shape[0], -1)
            h = C.relu(h @ p["f1"] + p["fb1"])
            return C.cross_entropy(h @ p["f2"] + p["fb2"], y)
        value, grads = value_and_grad(loss)(p)
        return value, {k: p[k] - 0.01 * grads[k] for k in p}
    lp = {"c1": rng.standard_normal((6, 1, 5, 5)).astype(np.float32) * 0.2, "cb1": np.zeros(6, np.float32),
          "c2": rng.standard_normal((16, 6, 5, 5)).astype(np.float32) * 0.1, "cb2": np.zeros(16, np.float32),
          "f1": rng.standard_normal((400, 120)).astype(np.float32) * 0.05, "fb1": np.zeros(120, np.float32),
          "f2": rng.standard_normal((120, 10)).astype(np.float32) * 0.1, "fb2": np.zeros(10, np.float32)}
    xl = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    yl = rng.integers(0, 10, 128).astype(np.int64)
    bench("LeNet-5 training step b128", lenet_step, [lp, xl, yl], rtol=1e-3)
    return rows


def _format_row(row: dict) -> str:
    rate = f"{row['rate']:.1f} {row['unit']}" if row.get("rate") is not None else ""
    peak = f" ({100 * row['of_peak']:.0f}% of peak)" if row.get("of_peak") else ""
    return f"{row['workload']:<42} {row['impl']:<36} {1e3 * row['seconds']:9.3f} ms  {rate}{peak}"


def to_markdown(rows: list[dict], device: str) -> str:
    lines = [f"## Triton backend on {device}", "", "| workload | implementation | ms | rate | of peak |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        rate = f"{r['rate']:.1f} {r['unit']}" if r.get("rate") is not None else ""
        peak = f"{100 * r['of_peak']:.0f}%" if r.get("of_peak") else ""
        lines.append(f"| {r['workload']} | {r['impl']} | {1e3 * r['seconds']:.3f} | {rate} | {peak} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--out", help="also write the results as a markdown table to this file")
    args = parser.parse_args(argv)
    try:
        import triton  # noqa: F401
    except ImportError:
        print("bench.gpu: skipped: triton is not installed (pip install 'kernelflow[gpu]')")
        return 0
    from kernelflow.runtime.gpu import cuda, gpu_available
    from kernelflow.codegen.triton import interpreting
    if interpreting():
        print("bench.gpu: skipped: TRITON_INTERPRET is set (the CPU interpreter is for tests, not timings)")
        return 0
    if not gpu_available():
        try:
            cuda()
        except Exception as e:  # noqa: BLE001 - the message is the point
            print(f"bench.gpu: skipped: no NVIDIA GPU ({e})")
        return 0
    print(f"bench.gpu on {cuda().name}")
    rows = run(quick=args.quick)
    table = to_markdown(rows, cuda().name)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
