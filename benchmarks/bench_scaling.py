"""Scaling over GPUs: DDP training img/s and sharded video inference frames/s, 1 -> N processes.

Usage (a multi-GPU machine; every count must fit the visible cards)::

    python benchmarks/bench_scaling.py --coco-json work/ccp400s/coco.json \
        --params params/gpu-train-ccp.yaml --train-gpus 1 2 4 --budget-s 40 \
        --videos ../shared/data/videos/juggle.mp4 --copies 8 --max-frames 96 --infer-gpus 1 2 4 \
        --json scaling.json

    python benchmarks/bench_scaling.py --tiny        # CPU, gloo, 1 and 2 processes (CI)

Training: the same params file under ``torchrun --nproc_per_node=N -m yeay_nb.train`` for
each N, for ``--budget-s`` seconds (``train.time_budget_s``); img/s is read from
``metrics.jsonl`` over the windows after the first two (cuDNN autotuning, worker start-up),
and scaling efficiency is img/s(N) / (N x img/s(1)). The schedule each N derives from the one
file (linear scaling by total batch) is printed by the trainer; it is recorded here too, with a
check that images seen and lr per image stay the same.

Inference: a manifest of ``--copies`` entries of the given video(s) (links with distinct names,
so every entry is a separate video) under ``torchrun --nproc_per_node=N -m yeay_nb.infer``;
each rank reports frames and seconds after its models are loaded, and the aggregate
frames/s is all frames over the slowest rank's seconds. The checkpoint of the 1-GPU training
run is the clothing model and (``same``) the person model.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RANK_LINE = re.compile(r"infer: videos done (\d+), skipped (\d+), failed (\d+); (\d+) frames in ([\d.]+) s")


def torchrun(n: int, module: str, args: list[str], log: Path, timeout: float) -> tuple[int, float]:
    """Run ``module`` under torchrun with ``n`` local processes; (return code, wall seconds)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", module, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - t0


def steady_img_per_s(metrics: Path, total_batch: int, skip_windows: int = 2) -> tuple[float, int]:
    """img/s between the end of log window ``skip_windows`` and the last window; (img/s, iterations)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "img_per_s" in r]
    if len(rows) < skip_windows + 2:
        raise RuntimeError(f"{metrics}: only {len(rows)} log windows, too few to measure (raise --budget-s)")
    a, b = rows[skip_windows], rows[-1]
    return (b["iteration"] - a["iteration"]) * total_batch / (b["time"] - a["time"]), b["iteration"]


def train_scaling(args, coco_json: Path, out: Path) -> list[dict]:
    from yeay_nb.params import load_params
    from yeay_nb.train import derive_schedule

    results = []
    for n in args.train_gpus:
        run_dir = out / f"train_{n}"
        over = {"train.coco_json": str(Path(coco_json).resolve()), "train.output_dir": str(run_dir.resolve()),
                "train.time_budget_s": args.budget_s, "train.skip_test": True, "train.snapshot_iters": 10**7,
                "train.log_every": args.log_every, **dict(args.set)}
        p = load_params(args.params, over)
        sched = derive_schedule(p.train, n)
        cli = ["-f", str(args.params)] + [x for k, v in over.items() for x in ("-p", k, str(v))]
        rc, wall = torchrun(n, "yeay_nb.train", cli, out / f"train_{n}.log", args.budget_s + args.startup_s)
        row = {"gpus": n, "rc": rc, "wall_s": round(wall, 1), "total_batch": sched.total_batch, "lr": sched.lr,
               "max_iter": sched.max_iter, "steps": sched.steps, "warmup_iters": sched.warmup_iters}
        if rc == 0:
            ips, iters = steady_img_per_s(run_dir / "metrics.jsonl", sched.total_batch)
            row.update(img_per_s=round(ips, 1), iterations=iters)
        else:
            row["log_tail"] = (out / f"train_{n}.log").read_text()[-2000:]
        derived = [ln for ln in (out / f"train_{n}.log").read_text().splitlines() if "derived schedule" in ln]
        row["trainer_line"] = derived[0].strip() if derived else None
        results.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in results if r["gpus"] == 1 and "img_per_s" in r), None)
    for r in results:
        if base and "img_per_s" in r:
            r["speedup"] = round(r["img_per_s"] / base["img_per_s"], 2)
            r["efficiency"] = round(r["img_per_s"] / (r["gpus"] * base["img_per_s"]), 3)
    return results


def schedule_equivalence(params: Path, counts: list[int], overrides: dict | None = None) -> list[dict]:
    """The schedule each GPU count derives from one file, and whether it is the same training."""
    from yeay_nb.params import load_params
    from yeay_nb.train import derive_schedule

    t = load_params(params, overrides or {}).train
    rows = []
    for n in counts:
        s = derive_schedule(t, n)
        rows.append({"gpus": n, "total_batch": s.total_batch, "lr": s.lr, "max_iter": s.max_iter, "steps": s.steps,
                     "warmup_iters": s.warmup_iters, "images_seen": s.max_iter * s.total_batch,
                     "lr_per_image": s.lr / s.total_batch})
    first = rows[0]
    for r in rows:
        r["same_as_first"] = (abs(r["images_seen"] - first["images_seen"]) <= r["total_batch"]
                              and abs(r["lr_per_image"] - first["lr_per_image"]) < 1e-12)
    return rows


def infer_scaling(args, checkpoint: Path, out: Path) -> list[dict]:
    vids = out / "videos"
    vids.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i in range(args.copies):
        src = Path(args.videos[i % len(args.videos)]).resolve()
        link = vids / f"v{i:03d}_{src.name}"
        if not link.exists():
            link.symlink_to(src)
        manifest.append(str(link))
    (out / "manifest.json").write_text(json.dumps(manifest))
    results = []
    for n in args.infer_gpus:
        cli = ["--input", str(out / "manifest.json"), "--output-dir", str(out / f"infer_{n}"), "--clothing-model",
               str(checkpoint), "--person-model", args.person_model, "--batch-size", str(args.batch_size), "--no-progress",
               "--clobber"]
        if args.max_frames:
            cli += ["--max-frames", str(args.max_frames)]
        if args.device:
            cli += ["--device", args.device]
        if args.person_model == "none":
            cli += ["--steps", "clothing"]
        rc, wall = torchrun(n, "yeay_nb.infer", cli, out / f"infer_{n}.log", args.infer_timeout_s)
        ranks = [tuple(float(x) for x in m.groups()) for m in RANK_LINE.finditer((out / f"infer_{n}.log").read_text())]
        row = {"gpus": n, "rc": rc, "wall_s": round(wall, 1), "ranks": len(ranks)}
        if rc == 0 and len(ranks) == n:
            frames = sum(r[3] for r in ranks)
            slowest = max(r[4] for r in ranks)
            row.update(videos=int(sum(r[0] for r in ranks)), failed=int(sum(r[2] for r in ranks)), frames=int(frames),
                       slowest_rank_s=slowest, frames_per_s=round(frames / slowest, 1))
        else:
            row["log_tail"] = (out / f"infer_{n}.log").read_text()[-2000:]
        results.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in results if r["gpus"] == 1 and "frames_per_s" in r), None)
    for r in results:
        if base and "frames_per_s" in r:
            r["speedup"] = round(r["frames_per_s"] / base["frames_per_s"], 2)
    return results


def tiny_inputs(tmp: Path, args) -> tuple[Path, Path, list[str]]:
    """CPU smoke: a toy COCO set, a tiny params file, a synthetic video."""
    import yaml
    from helpers_train import make_toy_coco

    from yeay_nb.synth import make_videos

    coco = make_toy_coco(tmp / "toy", n_images=16, size=(96, 64))
    params = tmp / "tiny.yaml"
    params.write_text(yaml.safe_dump({"train": {
        "model": "maskrcnn", "backbone": "mobilenet_v3", "norm": "bn", "heads": "light", "weights": "none",
        "base_lr": 0.01, "max_iter": 10**6, "steps": [10**6], "warmup_iters": 2, "ims_per_gpu": 2,
        "reference_batch": 4, "train_scales": [64], "max_size": 96, "test_scale": 64, "test_max_size": 96,
        "rois_per_image": 16, "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 30,
        "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 30, "num_workers": 0, "cpu_threads": 1,
        "device": "cpu"}}))
    videos = make_videos(tmp / "videos", num_videos=1, num_frames=6, size=(96, 64), seed=0)
    return coco, params, [str(v) for v in videos]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: gloo, 1 and 2 processes")
    ap.add_argument("--coco-json", type=Path)
    ap.add_argument("--params", type=Path, default=ROOT / "params" / "gpu-train-ccp.yaml")
    ap.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="extra params override for the training runs (repeatable)")
    ap.add_argument("--train-gpus", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="inference only, with this clothing model (no training runs, no --coco-json)")
    ap.add_argument("--budget-s", type=float, default=40.0)
    ap.add_argument("--startup-s", type=float, default=120.0, help="allowance for start-up and saving, per run")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--videos", nargs="+", default=[])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--max-frames", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--infer-gpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--infer-timeout-s", type=float, default=300.0)
    ap.add_argument("--person-model", default="same", help="'same' (the trained model has a person class) or 'none'")
    ap.add_argument("--device", default=None, help="inference device (default: cuda:LOCAL_RANK when available)")
    ap.add_argument("--schedule-gpus", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--out", type=Path, default=None, help="keep run folders here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp_s:
        out = args.out or Path(tmp_s)
        out.mkdir(parents=True, exist_ok=True)
        if args.tiny:
            coco, args.params, args.videos = tiny_inputs(out, args)
            args.budget_s, args.log_every, args.copies, args.max_frames = 12.0, 2, 2, 4
            args.train_gpus, args.infer_gpus, args.device, args.person_model = [1, 2], [1, 2], "cpu", "none"
        else:
            if (args.coco_json is None and args.checkpoint is None) or not args.videos:
                ap.error("--coco-json (or --checkpoint) and --videos are required (or --tiny)")
            if args.checkpoint is not None:
                args.train_gpus = []
            coco = args.coco_json
        device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else "cpu"
        res = {"device": device, "cards": torch.cuda.device_count() if torch.cuda.is_available() else 0,
               "torch": torch.__version__, "params": str(args.params), "budget_s": args.budget_s,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        res["schedule"] = schedule_equivalence(args.params, args.schedule_gpus, dict(args.set))
        res["train"] = train_scaling(args, coco, out) if args.train_gpus else []
        ckpt = args.checkpoint or out / "train_1" / "model_final.pt"
        res["infer"] = infer_scaling(args, ckpt, out) if ckpt.exists() else [{"error": f"no checkpoint {ckpt}"}]
    print("\nschedule from one params file:")
    for r in res["schedule"]:
        print(f"  {r['gpus']} GPU(s): batch {r['total_batch']}, lr {r['lr']:.4g}, max_iter {r['max_iter']}, "
              f"steps {r['steps']}, images seen {r['images_seen']}, same training: {r['same_as_first']}")
    print(f"\ntraining ({device}):\n  gpus  img/s   speedup  efficiency")
    for r in res["train"]:
        print(f"  {r['gpus']:>4}  {r.get('img_per_s', 'FAIL')!s:>6}  {r.get('speedup', '-')!s:>7}  "
              f"{r.get('efficiency', '-')!s:>10}")
    print("\nsharded inference:\n  gpus  frames/s  speedup  frames")
    for r in res["infer"]:
        print(f"  {r.get('gpus', '-')!s:>4}  {r.get('frames_per_s', 'FAIL')!s:>8}  {r.get('speedup', '-')!s:>7}  "
              f"{r.get('frames', '-')!s:>6}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    ok = all(r.get("rc") == 0 for r in res["train"] + res["infer"]) and all(r["same_as_first"] for r in res["schedule"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
