"""Re-score every finished sweep run at other test scales (``yeay-nb evaluate``), one job per GPU.

For finished run folder ``R`` (``model_final.pt`` and its own ``eval.json``) and scale ``S`` it writes ``R@tsS/`` holding
``eval.json`` plus ``R``'s ``metrics.jsonl`` and its overrides with ``-p train.test_scale S``
appended, so ``scripts/sweep_summary.py`` lists it as one more row (test scale is a test-time
setting: the same training run, scored at another size; the long side keeps the 5:3 cap).
``--score-thresh T`` also lowers the score floor (the model's and the evaluation's, 0.05 in
training's own evaluation) and names the rows ``R@tsS-stT``: rare classes' right answers often
score under 0.05 with 38 softmax classes, and AP counts them. ``--flip`` scores with test-time flip
augmentation (``yeay-nb evaluate --flip``) in rows named ``R@tsS-flip``: the same model with and
without it, a paired comparison.

    python scripts/eval_scales.py /tmp/ccpruns --coco-json /tmp/ccpwork/coco.json --scales 480 560 --gpus 0 1 2 3
    python scripts/eval_scales.py /tmp/ccpruns --coco-json /tmp/ccpwork/coco.json --scales 400 --score-thresh 0.001
    python scripts/eval_scales.py /tmp/ccpruns --coco-json /tmp/ccpwork/coco.json --scales 400 --flip
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def row_name(run: str, scale: int, score_thresh: float | None, flip: bool = False) -> str:
    return f"{run}@ts{scale}" + ("" if score_thresh is None else f"-st{score_thresh:g}") + ("-flip" if flip else "")


def finished(run: Path) -> bool:
    """A run scored by its own training (eval.json beside model_final.pt). A run paused by
    stop_after_s also has a model_final.pt, a snapshot: scoring it would pin a half-trained row."""
    return "@" not in run.name and (run / "model_final.pt").is_file() and (run / "eval.json").is_file()


def jobs(root: Path, scales: list[int], score_thresh: float | None = None, flip: bool = False) -> list[tuple[Path, int]]:
    return [(d, s) for d in sorted(root.iterdir()) if d.is_dir() and finished(d)
            for s in scales if not (root / row_name(d.name, s, score_thresh, flip) / "eval.json").is_file()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--coco-json", required=True)
    ap.add_argument("--scales", type=int, nargs="+", required=True)
    ap.add_argument("--gpus", nargs="+", default=["0"])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--score-thresh", type=float, default=None,
                    help="score floor for these rows (default: the model's own, 0.05); rows named run@tsS-stT")
    ap.add_argument("--flip", action="store_true", help="test-time flip augmentation; rows named run@tsS-flip")
    args = ap.parse_args()
    todo = jobs(args.root, args.scales, args.score_thresh, args.flip)
    print(f"[eval_scales] {len(todo)} evaluations on GPUs {' '.join(args.gpus)}", flush=True)
    free, running, failed = list(args.gpus), {}, 0
    while todo or running:
        while todo and free:
            run, scale = todo.pop(0)
            gpu = free.pop(0)
            out = args.root / row_name(run.name, scale, args.score_thresh, args.flip)
            out.mkdir(exist_ok=True)
            log = open(out / "eval.log", "w")
            cmd = [sys.executable, "-m", "yeay_nb.evaluate", str(run / "model_final.pt"), "--coco-json", args.coco_json,
                   "--test-scale", str(scale), "--test-max-size", str(round(scale * 5 / 3)), "--no-progress",
                   "--workers", str(args.workers), "--output-dir", str(out)]
            if args.score_thresh is not None:
                cmd += ["--score-thresh", str(args.score_thresh)]
            if args.flip:
                cmd.append("--flip")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu})
            running[proc] = (gpu, run, scale, out, log, time.time())
        for proc in [p for p in running if p.poll() is not None]:
            gpu, run, scale, out, log, t0 = running.pop(proc)
            log.close()
            free.append(gpu)
            if proc.returncode:
                failed += 1
                print(f"[eval_scales] {out.name} failed ({proc.returncode}): see {out / 'eval.log'}", flush=True)
                continue
            if (run / "metrics.jsonl").is_file():
                shutil.copy(run / "metrics.jsonl", out / "metrics.jsonl")
            ov = (run / "overrides.txt").read_text().strip() if (run / "overrides.txt").is_file() else ""
            flip = " -p train.test_flip true" if args.flip else ""
            (out / "overrides.txt").write_text(f"{ov} -p train.test_scale {scale}{flip}".strip() + "\n")
            print(f"[eval_scales] {out.name} done in {time.time() - t0:.0f} s", flush=True)
        time.sleep(1)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
