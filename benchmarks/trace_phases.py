"""Where a training step leaves the GPU idle: forward vs backward, from a torch.profiler trace.

Usage::

    python benchmarks/trace_phases.py runs/x/profile_12-15.json[.gz]

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


def phase_idle(trace: dict) -> dict:
    """Host time and GPU idle time (ms) per forward and backward phase of the traced steps."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    busy = _busy_intervals(events)
    if not busy:
        raise ValueError("the trace holds no GPU kernels (a CPU run?): nothing to split")
    marks = sorted((e["ts"], e["ts"] + e.get("dur", 0), e["name"]) for e in events
                   if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith("Optimizer."))
    zero = [(a, b) for a, b, n in marks if ".zero_grad" in n]
    step = [(a, b) for a, b, n in marks if ".step" in n]
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


def load_trace(path: str | Path) -> dict:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    print(json.dumps(phase_idle(load_trace(sys.argv[1])), indent=1))


if __name__ == "__main__":
    main()
