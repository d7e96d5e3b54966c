"""Where a training step leaves the GPU idle: forward vs backward, from a torch.profiler trace.

Usage::

    python benchmarks/trace_phases.py runs/x/profile_12-15.json[.gz] [--windows 5]

Reads the chrome trace that ``train.profile_iters`` writes (``yeay_nb.train._StepProfiler``) and
splits it at the optimizer's own annotations: a step's **forward** runs from the end of the
previous ``Optimizer.step`` to its ``Optimizer.zero_grad`` (the trainer zeroes the gradients right
before ``backward``), its **backward** from ``zero_grad`` to ``Optimizer.step``. For each phase it
reports the host time and how much of it the GPU ran no kernel, memcpy or memset (the union of
their intervals, so kernels on several streams at once count once). A phase where the GPU is idle
for much of the host time is bound by the host (Python and op dispatch), not by the kernels.
Written for issue 7 target 2 (2026-11-29: the forward was host-bound on an H200, the backward not).
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def _busy_intervals(events: list[dict]) -> list[tuple[float, float]]:
    """Merged [start, end) intervals (µs) in which the GPU ran anything."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") in GPU_CATEGORIES and "dur" in e)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _idle(busy: list[tuple[float, float]], start: float, end: float) -> float:
    """µs of [start, end) in which the GPU ran nothing."""
    covered = sum(max(0.0, min(b, end) - max(a, start)) for a, b in busy)
    return (end - start) - covered


def _optimizer_marks(events: list[dict]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The (start, end) µs of every ``Optimizer.zero_grad`` and every ``Optimizer.step``, in time order."""
    marks = sorted((e["ts"], e["ts"] + e.get("dur", 0), e["name"]) for e in events
                   if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith("Optimizer."))
    return [(a, b) for a, b, n in marks if ".zero_grad" in n], [(a, b) for a, b, n in marks if ".step" in n]


def phase_idle(trace: dict) -> dict:
    """Host time and GPU idle time (ms) per forward and backward phase of the traced steps."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    busy = _busy_intervals(events)
    if not busy:
        raise ValueError("the trace holds no GPU kernels (a CPU run?): nothing to split")
    zero, step = _optimizer_marks(events)
    if not zero or not step:
        raise ValueError("no Optimizer.zero_grad / Optimizer.step annotations in the trace")
    ms = 1e-3
    phases = []
    prev_step_end = None
    for z_start, _ in zero:
        nxt = next((s for s in step if s[0] >= z_start), None)
        if prev_step_end is not None:  # a whole forward: from the last step's end to this zero_grad
            phases.append({"phase": "forward", "host_ms": (z_start - prev_step_end) * ms,
                           "gpu_idle_ms": _idle(busy, prev_step_end, z_start) * ms})
        if nxt is None:
            break
        phases.append({"phase": "backward", "host_ms": (nxt[0] - z_start) * ms,
                       "gpu_idle_ms": _idle(busy, z_start, nxt[0]) * ms})
        prev_step_end = nxt[1]
    span = busy[-1][1] - busy[0][0]
    out = {"gpu_span_ms": span * ms, "gpu_busy_ms": sum(b - a for a, b in busy) * ms, "phases": phases}
    out["gpu_busy_share"] = out["gpu_busy_ms"] / out["gpu_span_ms"]
    for name in ("forward", "backward"):
        ph = [p for p in phases if p["phase"] == name]
        if ph:
            host = sum(p["host_ms"] for p in ph)
            out[f"{name}_gpu_idle_share"] = sum(p["gpu_idle_ms"] for p in ph) / host if host else 0.0
    return out


def forward_windows(trace: dict, window_ms: float = 5.0, top: int = 5) -> list[dict]:
    """The first whole forward of the trace cut into ``window_ms`` windows: per window the GPU's busy
    share, the kernel launches and the most frequent top-level ATen ops of the main thread (the one
    with the most ops) -- where in the forward the host leaves the GPU waiting and on what. (2026-11-29:
    the ResNet + FPN windows were 17-42% busy on an H200, hence the CUDA graphs of yeay_nb.cudagraphs.)"""
    from collections import Counter

    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    busy = _busy_intervals(events)
    zeros, steps = _optimizer_marks(events)
    start = steps[0][1] if steps else None
    end = next((a for a, _ in zeros if start is not None and a > start), None)
    if end is None:
        raise ValueError("no whole forward (an Optimizer.step followed by an Optimizer.zero_grad) in the trace")
    ops = [e for e in events if e.get("cat") == "cpu_op" and "dur" in e and start <= e["ts"] < end]
    main = Counter(e.get("tid") for e in ops).most_common(1)[0][0] if ops else None
    top_level, reach = [], -1.0
    for e in sorted((e for e in ops if e.get("tid") == main), key=lambda e: (e["ts"], -e["dur"])):
        if e["ts"] >= reach:  # not inside the op before it
            top_level.append(e)
            reach = e["ts"] + e["dur"]
    launches = [e["ts"] for e in events if e.get("cat") == "cuda_runtime" and str(e.get("name", "")).startswith(
        ("cudaLaunch", "cuLaunch", "cudaGraphLaunch")) and start <= e["ts"] < end]
    rows, w = [], window_ms * 1e3
    t = start
    while t < end:
        u = min(t + w, end)
        covered = sum(max(0.0, min(b, u) - max(a, t)) for a, b in busy)
        names = Counter(e["name"] for e in top_level if t <= e["ts"] < u)
        rows.append({"start_ms": (t - start) * 1e-3, "gpu_busy_share": covered / (u - t),
                     "launches": sum(1 for x in launches if t <= x < u), "top_ops": names.most_common(top)})
        t = u
    return rows


def load_trace(path: str | Path) -> dict:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--windows", type=float, metavar="MS", default=None,
                    help="also cut the first forward into windows of MS milliseconds: GPU busy share, "
                         "kernel launches and the top-level ops in each")
    args = ap.parse_args()
    trace = load_trace(args.trace)
    print(json.dumps(phase_idle(trace), indent=1))
    if args.windows:
        for r in forward_windows(trace, args.windows):
            ops = ", ".join(f"{n} x{k}" for n, k in r["top_ops"])
            print(f"+{r['start_ms']:7.1f} ms  busy {r['gpu_busy_share']:4.0%}  launches {r['launches']:4d}  {ops}")


if __name__ == "__main__":
    main()
