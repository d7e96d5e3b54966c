"""Training throughput: a plain torchvision loop vs ``yeay_nb.train`` on the same data and model.

Usage::

    python benchmarks/bench_train.py --tiny                      # CPU, a toy dataset, ~2 min
    python benchmarks/bench_train.py --coco-json work/ccp/coco.json --iters 60 --batch 16 \
        --backbone resnet50 --norm gn --model maskrcnn --scales 320 480 --max-size 720

Both sides train the same model config for the same number of iterations after a warm-up.
The naive side is the textbook loop: PIL decode + ``to_tensor`` (float32) in the workers, no
pinned memory, no aspect grouping, torchvision's own model code, bf16 autocast on CUDA (as the
issue's reference loop; it was float32 before 2026-11-27, a weaker baseline). Ours is
:func:`yeay_nb.train.train` (uint8 decode with libjpeg-turbo, pinned memory, aspect-grouped
batches, bf16 autocast on CUDA, training targets for the whole batch at once:
``yeay_nb.fasttrain``); its img/s is read from ``metrics.jsonl``.
``--heads-ablation`` also runs ours with torchvision's per-image target code; ``--cuda-graphs N``
with the backbone as CUDA graphs (``train.cuda_graph_shapes``); ``--profile-out DIR``
runs ours once more under torch.profiler (``train.profile_iters``) for 3 iterations and, on a GPU,
splits the trace into forward and backward with the GPU's idle time in each (``trace_phases.py``).
Prints one json line with both sides and the ratio.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class NaiveCoco(torch.utils.data.Dataset):
    """PIL + to_tensor, the torchvision tutorial way."""

    def __init__(self, coco_json: Path, masks: bool):
        from yeay_nb.data import CocoDetectionDataset

        self.inner = CocoDetectionDataset(coco_json, "train", masks=masks, drop_empty=True)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        from PIL import Image
        from torchvision.transforms.functional import to_tensor

        img = to_tensor(Image.open(self.inner.image_path(i)).convert("RGB"))
        read = self.inner.read_image
        self.inner.read_image = lambda idx: torch.zeros(3, *img.shape[-2:], dtype=torch.uint8)  # targets only
        try:
            _, target = self.inner[i]
        finally:
            self.inner.read_image = read
        return img, target


def naive_loop(args, coco_json: Path, cfg: dict, device: torch.device) -> float:
    from yeay_nb.models import build_model

    ds = NaiveCoco(coco_json, masks=args.model == "maskrcnn")
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         collate_fn=lambda b: tuple(zip(*b)), drop_last=True)
    from yeay_nb.fasttrain import uninstall

    model = uninstall(build_model(cfg), transform=True, norm=True).to(device).train()  # torchvision's own training code
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
    done, t0 = 0, None
    while done < args.iters + args.warmup:
        for images, targets in loader:
            if done == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            images = [im.to(device) for im in images]
            targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done >= args.iters + args.warmup:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.iters * args.batch / (time.perf_counter() - t0)


def ours(args, coco_json: Path, out: Path, batched_heads: bool = True, profile_iters=None,
         low_precision_gn: bool = True, graph_shapes: int = 0) -> tuple[float, float]:
    """(img/s, share of the time the loop waited for its loader) over the window after the warm-up."""
    from yeay_nb.params import params_from_dict
    from yeay_nb.train import read_metrics, train

    run_dir = out / f"ours{int(batched_heads)}{int(low_precision_gn)}g{graph_shapes}{'_profiled' if profile_iters else ''}"
    p = params_from_dict({"work_dir": str(out), "train": {
        "model": args.model, "backbone": args.backbone, "norm": args.norm, "weights": "none", "base_lr": 0.001,
        "max_iter": args.iters + args.warmup, "steps": [10**6], "warmup_iters": 0, "ims_per_gpu": args.batch,
        "reference_batch": args.batch, "train_scales": args.scales, "max_size": args.max_size,
        "test_scale": args.scales[-1], "test_max_size": args.max_size, "num_workers": args.workers,
        "snapshot_iters": 10**6, "log_every": max(1, args.warmup), "skip_test": True, "coco_json": str(coco_json),
        "output_dir": str(run_dir), "cpu_threads": args.cpu_threads,
        "batched_heads": batched_heads, "profile_iters": profile_iters,
        "low_precision_group_norm": low_precision_gn, "cuda_graph_shapes": graph_shapes}})
    train(p, progress=False)
    if profile_iters:  # the trace and its table, beside the other results (the trace gzipped: ~10x smaller)
        import gzip
        import shutil

        args.profile_out.mkdir(parents=True, exist_ok=True)
        for f in run_dir.glob("profile_*"):
            if f.suffix == ".json":
                with open(f, "rb") as src, gzip.open(args.profile_out / (f.name + ".gz"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copy(f, args.profile_out / f.name)
    return timed_window(read_metrics(run_dir / "metrics.jsonl"), args.warmup, args.batch)


def timed_window(metrics: list[dict], warmup: int, batch: int) -> tuple[float, float]:
    """(img/s, share of the time spent waiting for the loader) from the row logged at iteration
    ``warmup`` to the last row. (Until 2026-11-29 this read the last row's own img/s: only the last
    ``log_every`` iterations, 6-10 of them, not the whole timed window.)"""
    rows = [r for r in metrics if "loss" in r and r["iteration"] >= warmup]
    first, last = rows[0], rows[-1]
    if first["iteration"] != warmup or last["iteration"] == warmup:
        raise ValueError(f"metrics rows at iterations {[r['iteration'] for r in rows]}: "
                         f"need one at the warm-up's end ({warmup}) and later ones")
    seconds = last["time"] - first["time"]
    waited = 0.0
    for prev, row in zip(rows, rows[1:]):
        waited += row["data_s"] * (row["iteration"] - prev["iteration"])
    return (last["iteration"] - warmup) * batch / seconds, min(waited / seconds, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU, toy dataset, small model")
    ap.add_argument("--coco-json", type=Path)
    ap.add_argument("--model", default="fasterrcnn")
    ap.add_argument("--backbone", default="mobilenet_v3")
    ap.add_argument("--norm", default="bn")
    ap.add_argument("--scales", type=int, nargs="+", default=[128])
    ap.add_argument("--max-size", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpu-threads", type=int, default=1)
    ap.add_argument("--heads-ablation", action="store_true",
                    help="also run ours with train.batched_heads false (torchvision's per-image targets)")
    ap.add_argument("--gn-ablation", action="store_true",
                    help="also run ours with train.low_precision_group_norm false (GroupNorm in float32)")
    ap.add_argument("--cuda-graphs", type=int, default=0, metavar="N",
                    help="also run ours with train.cuda_graph_shapes N (the backbone as CUDA graphs; GPU only); "
                         "the profile run then uses them too")
    ap.add_argument("--profile-out", type=Path, default=None,
                    help="also run ours once more with train.profile_iters over 3 iterations after the warm-up "
                         "and copy the trace (.json.gz) and its op table (.txt) here")
    args = ap.parse_args()
    if args.warmup < 1:  # ours is timed from the metrics row logged at the warm-up's last iteration
        ap.error("--warmup must be at least 1")
    from yeay_nb.models import full_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.cpu_threads)
        torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        coco_json = args.coco_json
        if args.tiny or coco_json is None:
            from helpers_train import make_toy_coco
            coco_json = make_toy_coco(tmp / "toy", n_images=48, size=(160, 128))
        cfg = full_config({"arch": args.model, "backbone": args.backbone, "norm": args.norm, "num_classes": 3,
                           "min_size": tuple(args.scales), "max_size": args.max_size})
        if not args.tiny and args.coco_json:
            from yeay_nb.convert.coco import classes_of, load_coco
            cfg["num_classes"] = len(classes_of(load_coco(coco_json)))
        ips_naive = naive_loop(args, coco_json, cfg, device)
        ips_ours, wait_ours = ours(args, coco_json, tmp)
        # the same trainer with torchvision's per-image target code: what the batched heads add
        ips_tv_heads = ours(args, coco_json, tmp, batched_heads=False)[0] if args.heads_ablation else None
        ips_gn32 = ours(args, coco_json, tmp, low_precision_gn=False)[0] if args.gn_ablation else None
        # the backbone as CUDA graphs (yeay_nb.cudagraphs), run after the eager "ours" above
        ips_graphs = ours(args, coco_json, tmp, graph_shapes=args.cuda_graphs)[0] if args.cuda_graphs else None
        phases = None
        if args.profile_out:  # a separate run: the profiler's overhead stays out of the img/s above
            ours(args, coco_json, tmp, profile_iters=[args.warmup + 2, args.warmup + 5], graph_shapes=args.cuda_graphs)
            if device.type == "cuda":  # where the traced steps left the GPU idle: forward vs backward
                from trace_phases import load_trace, phase_idle

                phases = phase_idle(load_trace(next(args.profile_out.glob("profile_*.json.gz"))))
    print(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "torch": torch.__version__, "naive_img_per_s": round(ips_naive, 4),
                      "ours_img_per_s": round(ips_ours, 4), "speedup": round(ips_ours / ips_naive, 3),
                      # > ~0.1: ours waits for its loader (the workers, not the model, set the pace)
                      "ours_loader_wait_share": round(wait_ours, 4),
                      "ours_torchvision_heads_img_per_s": ips_tv_heads and round(ips_tv_heads, 4),
                      "ours_float32_groupnorm_img_per_s": ips_gn32 and round(ips_gn32, 4),
                      "ours_cuda_graphs_img_per_s": ips_graphs and round(ips_graphs, 4),
                      "cuda_graphs_speedup": ips_graphs and round(ips_graphs / ips_naive, 3),
                      "cuda_graphs_vs_ours": ips_graphs and round(ips_graphs / ips_ours, 3),
                      "profile_phases": phases,
                      "config": vars(args) | {"coco_json": str(coco_json)}}, default=str))


if __name__ == "__main__":
    main()
