"""Writing a run's results: markdown tables, JSON, and a PNG chart (when matplotlib is installed)."""
from __future__ import annotations

import json
from pathlib import Path

from .harness import IMPLEMENTATIONS, PEERS, matching_copy_bandwidth


def _time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "-"
    if unit == "us":
        return f"{seconds * 1e6:.2f} µs"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds * 1e3:.3g} ms"


def _goal(workload: dict) -> str:
    goal = workload.get("goal")
    if not goal:
        return "-"
    text = f"≤ {goal['limit']:g}x {goal['peer']}"
    if goal["met"] is None:
        return text
    return f"{text}: {goal['ratio']:.2f}x, " + ("met" if goal["met"] else "not met")


def _bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _short_status(row: dict) -> str:
    status = row["status"]
    if status.startswith("FAILED"):
        return "**FAILED**"
    if status.startswith("unavailable"):
        return "unavailable"
    if status.startswith("error"):
        return "error"
    return status


def best_peer(workload: dict) -> tuple[str, float] | None:
    times = [(impl, row["median_s"]) for impl, row in workload["rows"].items()
             if impl in PEERS and row["status"] == "ok" and row["median_s"]]
    return min(times, key=lambda t: t[1]) if times else None


def markdown(results: dict) -> str:
    cfg = results["config"]
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        "# kernelflow benchmark results",
        "",
        f"Run {results['started']}{' (QUICK: tiny sizes, not figures)' if cfg['quick'] else ''}; "
        f"{cfg['threads']} thread(s); kernelflow backend `{cfg['backend']}`; {cfg['runs']} timed runs after "
        f"{cfg['warmup']} warm-up call(s), medians; wall time of the run {results['wall_s']:.0f} s.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores "
        f"({', '.join(machine['cpu_flags'])}), caches {machine['caches']}, {machine['memory_gib']} GiB; "
        f"numpy BLAS {machine['numpy_blas']}"
        + (f" running its {machine['blas_kernels']} kernels" if machine.get("blas_kernels") else "")
        + "".join(f", {k}={v}" for k, v in machine.get("blas_environment", {}).items())
        + f"; Python {machine['python']}; {versions}; "
        f"git {machine['git_commit']}.",
        "",
        f"Load average (1 min) {results['load_average']['start']:.2f} at the start, "
        f"{results['load_average']['end']:.2f} at the end"
        + (f" (above {machine['cores'] / 2:g}: other processes were running; timed runs are interleaved "
           "across implementations so that they share the noise, but absolute times are inflated)."
           if max(results["load_average"].values()) > machine["cores"] / 2 else "."),
        "",
        "## Copy bandwidth (numpy copy into a preallocated buffer; GB/s = bytes read + written per second)",
        "",
        "| buffer | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in results["copy_threads"]) + " |",
        "|---|" + "---|" * len(results["copy_threads"]),
    ]
    for mib in sorted({r["size_mib"] for r in results["copy_bandwidth"]}):
        cells = [f"{r['gbps']:.1f}" for n in results["copy_threads"] for r in results["copy_bandwidth"]
                 if r["size_mib"] == mib and r["threads"] == n]
        lines.append(f"| {mib} MiB | " + " | ".join(cells) + " |")

    impls = [i for i in IMPLEMENTATIONS if i in cfg["impls"]]
    lines += ["", "## Medians (ratio = kernelflow / best peer; < 1 means kernelflow is faster)", "",
              "| workload | " + " | ".join(impls) + " | best peer | kernelflow / best peer | goal (issue 5) |",
              "|---|" + "---|" * (len(impls) + 3)]
    for w in results["workloads"]:
        cells = []
        for impl in impls:
            row = w["rows"].get(impl)
            if row is None:
                cells.append("-")
            elif row["status"] == "ok":
                cells.append(_time(row["median_s"], w["unit"]))
            else:
                cells.append(_short_status(row))
        best = best_peer(w)
        ratio = w["ratios"].get(best[0]) if best else None
        lines.append(f"| {w['key']} {w['title']} | " + " | ".join(cells) +
                     f" | {best[0] if best else '-'} | {f'{ratio:.2f}x' if ratio else '-'} | {_goal(w)} |")

    lines += ["", "## Compile time (seconds; first call = trace + compile + run)", "",
              "| workload | kernelflow cold (new process, empty cache) | kernelflow warm (new process, full cache) "
              "| kernelflow first call in the suite's process (empty cache, peers loaded) "
              "| torch.compile first call | jax.jit first call |", "|---|---|---|---|---|---|"]
    cold = results.get("cold_compile") or {}
    warm = results.get("warm_compile") or {}

    def subprocess_cell(run: dict, key: str) -> str:
        cell = run.get("workloads", {}).get(key, {})
        return _seconds(cell["first_call_s"]) if "first_call_s" in cell else cell.get("status", "-")
    for w in results["workloads"]:
        rows = w["rows"]

        def first(impl):
            row = rows.get(impl)
            if not row or row["first_call_s"] is None:
                return "-"
            return _seconds(row["first_call_s"]) + (" (FAILED)" if row["status"].startswith("FAILED") else "")
        lines.append(f"| {w['key']} {w['title']} | {subprocess_cell(cold, w['key'])} | "
                     f"{subprocess_cell(warm, w['key'])} | {first('kernelflow')} | "
                     f"{first('torch.compile')} | {first('jax.jit')} |")
    startup = results.get("startup", {})
    if startup:
        lines += ["", "One-time start-up in the process (first call of a trivial function, not counted above): " +
                  "; ".join(f"{k} {_seconds(v) if isinstance(v, float) else v}" for k, v in startup.items()) + "."]
    for run in (cold, warm):
        if run.get("note"):
            lines += ["", f"Subprocess (kernelflow and numpy only): {run['note']}"]
    lines += ["", "The cold figures empty kernelflow's cache, not numba's own cache of the hand-written window "
              "kernels (`kernelflow/codegen/numba/__pycache__`, compiled once per installation and dtype)."]

    lines += ["", "## Details", ""]
    for w in results["workloads"]:
        sizes = " (quick run: tiny sizes instead)" if cfg["quick"] else ""
        lines += [f"### {w['key']} {w['title']}", "", f"{w['description']}{sizes}. Check: {w['tolerance']}, "
                  f"element by element, against numpy eager."
                  + (f" Bytes moved (minimum): {_bytes(w['bytes_moved'])}." if w["bytes_moved"] else "")
                  + (f" Each sample times {w['calls_per_run']} calls." if w["calls_per_run"] > 1 else ""), ""]
        memory_bound = w["bytes_moved"] is not None
        header = "| implementation | status | median | min – max | " + (
            "GB/s | % of copy | " if memory_bound else "") + "kernelflow / this | check |"
        lines += [header, "|---" * (header.count("|") - 1) + "|"]
        for impl in impls:
            row = w["rows"].get(impl)
            if row is None:
                continue
            spread = (f"{_time(row['min_s'], w['unit'])} – {_time(row['max_s'], w['unit'])}"
                      if row["min_s"] is not None else "-")
            cells = [impl, row["status"] if not row["status"].startswith("FAILED") else "**" + row["status"] + "**",
                     _time(row["median_s"], w["unit"]) if row["status"] == "ok" else "-", spread]
            if memory_bound:
                copy = matching_copy_bandwidth(results["copy_bandwidth"], w["bytes_moved"], cfg["threads"])
                if row["gbps"] and row["status"] == "ok":
                    cells.append(f"{row['gbps']:.1f}")
                    cells.append(f"{100 * row['gbps'] / copy['gbps']:.0f}% of {copy['size_mib']} MiB copy"
                                 if copy else "-")
                else:
                    cells += ["-", "-"]
            ratio = w["ratios"].get(impl)
            cells.append(f"{ratio:.2f}x" if ratio else "-")
            cells.append(row["check"] or "-")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("chart_note"):
        lines += [results["chart_note"], ""]
    return "\n".join(lines)


def chart(results: dict, path: Path) -> str | None:
    """Bars of the median time per implementation, one panel per workload. Returns a note when skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "No chart: matplotlib is not installed (pip install matplotlib, or the `bench` extra)."
    workloads = results["workloads"]
    cols = min(4, len(workloads))
    rows = (len(workloads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    colors = {"numpy": "#999999", "torch": "#ee8833", "torch.compile": "#cc5500", "jax.jit": "#3377bb",
              "kernelflow": "#22aa44"}
    for ax, w in zip(axes.flat, workloads):
        names, values, bar_colors = [], [], []
        scale, unit = (1e6, "µs") if w["unit"] == "us" else (1e3, "ms")
        for impl, row in w["rows"].items():
            names.append(impl.replace("torch.compile", "torch\n.compile"))
            ok = row["status"] == "ok" and row["median_s"]
            values.append(row["median_s"] * scale if ok else 0)
            bar_colors.append(colors.get(impl, "#555555"))
        bars = ax.bar(range(len(names)), values, color=bar_colors)
        for bar, (impl, row) in zip(bars, w["rows"].items()):
            if row["status"] != "ok":
                label = "FAILED" if row["status"].startswith("FAILED") else "n/a"
                ax.text(bar.get_x() + bar.get_width() / 2, 0, label, ha="center", va="bottom", fontsize=7,
                        rotation=90)
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{w['key']} {w['title']}", fontsize=9)
        ax.set_ylabel(f"median {unit} (lower is better)", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    fig.suptitle(f"kernelflow vs peers, {results['config']['threads']} thread(s)"
                 + (" (quick)" if results["config"]["quick"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(results: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md", "png": out_dir / "results.png"}
    note = chart(results, paths["png"])
    if note:
        results["chart_note"] = note
        paths.pop("png").unlink(missing_ok=True)     # never leave a chart of an earlier run beside these results
    paths["json"].write_text(json.dumps(results, indent=1))
    paths["md"].write_text(markdown(results))
    return paths
