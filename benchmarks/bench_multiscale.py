"""Multi-scale training: one random scale per image (torchvision) vs one per batch (``scale_per_batch``).

Usage::

    python benchmarks/bench_multiscale.py                                   # CCP-like sizes, the CCP recipe
    python benchmarks/bench_multiscale.py --coco-json work/ccp/coco.json --step --backbone resnet50 \
        --norm gn --json out.json                                           # on a GPU: also step time

A batch is padded to its largest image. With the scale drawn per image, a batch of 16 with 6
scales nearly always holds one image at the largest scale, so the whole batch costs that scale;
drawn per batch, every image keeps the same distribution of scales and each batch costs its own.
The script runs the real training transform (``yeay_nb.models.TrainTestTransform``) over random
aspect-grouped batches and reports the padded pixels per image that the network sees (what the
backbone's compute is proportional to) and the pixels of actual image content; ``--step`` also
times a training step (forward, backward, SGD) of a model on those batches for both modes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def image_sizes(coco_json: str | None, n: int) -> list[tuple[int, int]]:
    """(h, w) of the training images in ``coco_json``, else CCP's: 400x600 portrait (the carried copy)."""
    if coco_json:
        doc = json.loads(Path(coco_json).read_text())
        return [(im["height"], im["width"]) for im in doc["images"]]
    return [(600, 400)] * n


def batches(sizes, batch: int, count: int, seed: int):
    """Aspect-grouped batches (portrait with portrait), as the training loader makes them."""
    g = torch.Generator().manual_seed(seed)
    groups = [[s for s in sizes if s[0] >= s[1]], [s for s in sizes if s[0] < s[1]]]
    groups = [gr for gr in groups if len(gr) >= batch]
    for _ in range(count):
        gr = groups[int(torch.randint(len(groups), (1,), generator=g))]
        idx = torch.randint(len(gr), (batch,), generator=g).tolist()
        yield [gr[i] for i in idx]


def measure_pixels(transform, batch_list, seed: int) -> dict:
    torch.manual_seed(seed)
    padded, content = [], []
    for sizes in batch_list:
        images = [torch.zeros(3, h, w) for h, w in sizes]
        targets = [{"boxes": torch.tensor([[1.0, 1.0, w / 2, h / 2]]), "labels": torch.tensor([1])} for h, w in sizes]
        il, _ = transform(images, targets)
        padded.append(il.tensors.shape[-2] * il.tensors.shape[-1])
        content.append(sum(h * w for h, w in il.image_sizes) / len(sizes))
    return {"padded_px_per_image": round(statistics.mean(padded)), "content_px_per_image": round(statistics.mean(content)),
            "content_share": round(statistics.mean(content) / statistics.mean(padded), 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coco-json", default=None, help="take the image sizes from here (default: CCP's 400x600)")
    ap.add_argument("--scales", type=int, nargs="+", default=[320, 352, 384, 416, 448, 480])
    ap.add_argument("--max-size", type=int, default=720)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", action="store_true", help="also time training steps of a model on these batches")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--norm", default="gn")
    ap.add_argument("--heads", default="light")
    ap.add_argument("--step-batches", type=int, default=12)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from yeay_nb.models import TrainTestTransform

    sizes = image_sizes(args.coco_json, 64)
    batch_list = list(batches(sizes, args.batch, args.batches, args.seed))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    result = {"config": vars(args), "rows": []}
    for per_batch in (False, True):
        t = TrainTestTransform(tuple(args.scales), args.max_size, args.scales[-1], args.max_size, mean, std,
                               scale_per_batch=per_batch).train()
        row = {"scale_per": "batch" if per_batch else "image", **measure_pixels(t, batch_list, args.seed)}
        if args.step:
            row.update(time_steps(args, batch_list[:args.step_batches], per_batch))
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
    a, b = result["rows"]
    result["padded_px_ratio"] = round(a["padded_px_per_image"] / b["padded_px_per_image"], 3)
    print(f"\nscale drawn per image: {a['padded_px_per_image']:,} padded px/image ({a['content_share']:.0%} content); "
          f"per batch: {b['padded_px_per_image']:,} ({b['content_share']:.0%}); "
          f"{result['padded_px_ratio']:.2f}x fewer pixels per image")
    if args.step:
        result["step_speedup"] = round(a["step_ms_per_image"] / b["step_ms_per_image"], 3)
        print(f"training step: {a['step_ms_per_image']} vs {b['step_ms_per_image']} ms per image "
              f"({result['step_speedup']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


def time_steps(args, batch_list, per_batch: bool) -> dict:
    """Mean training-step time per image of a freshly built model over ``batch_list``."""
    from yeay_nb.models import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model({"arch": "maskrcnn", "backbone": args.backbone, "norm": args.norm, "heads": args.heads,
                         "num_classes": 5, "min_size": tuple(args.scales), "max_size": args.max_size,
                         "scale_per_batch": per_batch}).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    times = []
    for k, sizes in enumerate(batch_list):
        images = [torch.rand(3, h, w, device=device) for h, w in sizes]
        targets = []
        for h, w in sizes:
            masks = torch.zeros(1, h, w, dtype=torch.uint8, device=device)
            masks[0, h // 4:h // 2, w // 4:w // 2] = 1
            targets.append({"boxes": torch.tensor([[w / 4, h / 4, w / 2, h / 2]], device=device),
                            "labels": torch.tensor([1], device=device), "masks": masks})
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= 2:  # the first steps tune and allocate
            times.append(time.perf_counter() - t0)
    return {"step_ms_per_image": round(1000 * statistics.mean(times) / len(batch_list[0]), 2),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}


if __name__ == "__main__":
    main()
