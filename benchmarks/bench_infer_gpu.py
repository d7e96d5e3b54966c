"""Video inference end to end: the naive 2018-style loop against ``run_inference``, same run, same card.

Both sides do the whole job on the same video: decode, a person Mask R-CNN R50-FPN and a
clothing Faster R-CNN R50-FPN (test scale 500/833, up to 100 detections a frame), items,
blur scores, person-mask RLEs, one JSON.

- **naive** (what the 2018 script did): PyAV decodes a frame; each model runs on it alone
  (batch 1, fp32, torchvision's own forward, which pastes all 100 masks at frame size); every
  person mask is thresholded and RLE-encoded on the CPU; blur in the same thread; JSON at the end.
- **ours**: ``yeay_nb.infer.run_inference`` (decode thread, batched frames, the product's
  default precision unless ``--precision`` says otherwise (tf32 since 2026-11-27 evening; bf16
  before: RESULTS.md rows up to then are bf16), channels_last, folded norms, one shared
  upload/resize for both models, masks only for kept person detections, one device-to-host copy
  per batch). ``--precisions`` times and checks other precisions too, each alternated with runs at the default (``vs_default``); fp32 always is.

Models: untrained (no weights are reachable on the lent machines), so the detections are made
realistic by construction: BatchNorm-free random R50-FPNs whose classifier weights are scaled
on the video's first frame (``--logit-std``, no class favoured, the person bias set so ~4 persons
score above 0.5) so that, as with a trained model, regions have a clear class and spread scores; with
the standard 0.05 score floor this gives 100 detections a frame and a few person masks (both
counts are printed). Checked: same classes, box IoU >= 0.99 and mask IoU >= 0.98 for matched
detections, scores within bf16 tolerance.

Usage (one GPU)::

    python benchmarks/bench_infer_gpu.py --video .device/videos/juggle_960x540.mp4 \\
        --frames 240 --naive-frames 48 --batch-sizes 8 16 32 \\
        --large .device/videos/juggle_1080p.mp4 .device/videos/juggle_4k.mp4 --json out.json

    python benchmarks/bench_infer_gpu.py --tiny        # CPU, small frames and models (CI)

Timing: every frames/s is the median of ``--repeat`` runs (default 3 on a GPU), each run listed in
``fps_runs``. One 240-frame run lasts ~2.5 s, and on the lent H100s identical configurations read
0.98-1.14x of each other within one call and 0.77x after a few minutes in another (RESULTS.md,
2026-11-27 late). Ablations therefore alternate: default, switch flipped, default, flipped, ... and
each row's ``vs_default`` is the ratio of the two medians of its own pairs.
"""
from __future__ import annotations

import argparse
import atexit
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yeay_nb import scoring  # noqa: E402


# --------------------------------------------------------------------------- models
def _first_output(model, module, x):
    """What ``module`` outputs during one forward pass of ``model`` on image ``x``."""
    import torch

    seen: list = []
    hook = module.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        with torch.inference_mode():
            model([x])
    finally:
        hook.remove()
    return seen[0].clone()


def make_checkpoints(tmp: Path, backbone: str, test_min: int, test_max: int, logit_std: float,
                     calib_frame: np.ndarray, person_masks: int = 4,
                     which: tuple[str, ...] = ("person", "clothing")) -> tuple[Path, ...]:
    """An untrained person Mask R-CNN (COCO's 91 classes) and clothing Faster R-CNN (the 38-class
    taxonomy), their classifiers calibrated on one frame so that detections look like a trained
    model's: class logits with spread ``logit_std`` and no class favoured on average (so scores
    are spread, not tied), and ``person`` detected above 0.5 about ``person_masks`` times.
    ``which``: the models to make, their checkpoints returned in that order."""
    import torch
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    from yeay_nb.models import build_model, save_checkpoint
    from yeay_nb.taxonomy import load_taxonomy

    coco = list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
    clothing = list(load_taxonomy().classes)
    x = torch.from_numpy(calib_frame).permute(2, 0, 1).float() / 255.0
    specs = {"person": ("maskrcnn", coco, 1), "clothing": ("fasterrcnn", clothing, 2)}
    paths = []
    for name in which:
        arch, classes, seed = specs[name]
        torch.manual_seed(seed)
        cfg = {"arch": arch, "backbone": backbone, "norm": "frozen_bn", "num_classes": len(classes),
               "test_min_size": test_min, "test_max_size": test_max, "box_detections_per_img": 100}
        model = build_model(cfg).eval()
        cls = model.roi_heads.box_predictor.cls_score
        mask_logits = model.roi_heads.mask_predictor.mask_fcn_logits if arch == "maskrcnn" else None
        logits = _first_output(model, cls, x)
        with torch.no_grad():
            factor = logit_std / float(logits[:, 1:].std())
            cls.weight.mul_(factor)
            cls.bias.mul_(factor)
            logits = logits * factor
            cls.bias[1:].sub_(logits[:, 1:].mean(0))  # no class favoured on average
            if "person" in classes:  # bisect the person bias to ~person_masks kept masks on this frame
                p, lo, hi = classes.index("person"), -20.0, 20.0
                base = float(cls.bias[p])
                for _ in range(14):
                    mid = (lo + hi) / 2
                    cls.bias[p] = base + mid
                    with torch.inference_mode():
                        o = model([x])[0]
                    kept = int(((o["labels"] == p) & (o["scores"] >= 0.5)).sum())
                    if abs(kept - person_masks) <= 1:
                        break
                    lo, hi = (mid, hi) if kept < person_masks else (lo, mid)
        if mask_logits is not None:  # confident masks (probabilities away from 0.5), as trained ones are
            with torch.no_grad():
                f = logit_std / float(_first_output(model, mask_logits, x).std())
                mask_logits.weight.mul_(f)
                mask_logits.bias.mul_(f)
        paths.append(save_checkpoint(tmp / f"{name}.pt", model=model, classes=classes, model_config=cfg))
    return tuple(paths)


def trained_checkpoints(tmp: Path, ckpt: Path, test_min: int, test_max: int) -> tuple[Path, Path]:
    """The person and clothing models from one trained Mask R-CNN checkpoint (e.g. CCP's, whose
    classes hold ``person`` and the clothing taxonomy): the person side is the checkpoint itself,
    the clothing side its Faster R-CNN part (the mask head's weights dropped); both at the
    benchmark's test size and 100 detections a frame. For the bf16 tolerance check, which random
    networks cannot show (their classes hang on tiny logit gaps)."""
    from yeay_nb.models import build_model, inference_weights, load_checkpoint, save_checkpoint

    state = load_checkpoint(ckpt)
    cfg = dict(state["model_config"], test_min_size=test_min, test_max_size=test_max, box_detections_per_img=100)
    if cfg.get("arch") != "maskrcnn" or "person" not in state["classes"]:
        raise SystemExit(f"--trained {ckpt}: needs a Mask R-CNN checkpoint with a 'person' class")
    paths = []
    for name, arch in (("person", "maskrcnn"), ("clothing", "fasterrcnn")):
        c = dict(cfg, arch=arch)
        weights = {k: v for k, v in inference_weights(state).items() if arch == "maskrcnn" or not k.startswith("roi_heads.mask_")}
        model = build_model(c)
        model.load_state_dict(weights)
        paths.append(save_checkpoint(tmp / f"{name}.pt", model=model, classes=list(state["classes"]), model_config=c))
    return paths[0], paths[1]


# --------------------------------------------------------------------------- naive loop
def naive(video: Path, person_ckpt: Path, clothing_ckpt: Path, frames: int, device: str, out_json: Path,
          score_floor: float = 0.05, mask_thresh: float = 0.5) -> dict:
    """The 2018 loop. Returns timing and its results (items, kept person masks per frame)."""
    import av
    import torch

    from yeay_nb.infer import _encode_rle
    from yeay_nb.models import load_model

    person, pclasses, _ = load_model(person_ckpt, device=device, box_score_thresh=score_floor)
    clothing, _, _ = load_model(clothing_ckpt, device=device, box_score_thresh=score_floor)
    pid = pclasses.index("person")
    with torch.inference_mode():  # warm-up outside the timing
        x = torch.rand(3, 540, 960, device=device)
        person([x]), clothing([x])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    items, masks, mask_scores, blur = [], [], [], []
    t0 = time.perf_counter()
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            blur.append(scoring.laplacian_variance(rgb))
            with torch.inference_mode():
                t = torch.from_numpy(rgb).to(device).permute(2, 0, 1).float() / 255.0
                po = person([t])[0]
                co = clothing([t])[0]
            for s, c, b in zip(co["scores"].tolist(), co["labels"].tolist(), co["boxes"].tolist()):
                if s >= score_floor and c > 0:
                    items.append([i, int(c), round(s, 6), [round(v, 3) for v in b]])
            frame_masks, frame_scores = [], []
            for k, (s, c) in enumerate(zip(po["scores"].tolist(), po["labels"].tolist())):
                if c == pid:  # every person mask is encoded; the contract keeps those above mask_thresh
                    rle = _encode_rle((po["masks"][k, 0] > 0.5).cpu().numpy())
                    if s >= mask_thresh:
                        frame_masks.append(rle)
                        frame_scores.append(round(s, 6))
            masks.append(frame_masks)
            mask_scores.append(frame_scores)
    out_json.write_text(json.dumps({"items": items, "coco_rle_masks": [[m] for m in masks],
                                    "mask_scores": [[s] for s in mask_scores],
                                    "blur_scores": [[[b]] for b in scoring.normalize_blur(blur)]}))
    sec = time.perf_counter() - t0
    return {"frames": len(masks), "seconds": sec, "fps": len(masks) / sec, "items": items, "masks": masks,
            "mask_scores": mask_scores}


# --------------------------------------------------------------------------- ours
# the fast path's switches (yeay_nb.fastpath) that a bare --ablate flips one at a time
LEVERS = ("CONCURRENT_MODELS", "CHANNELS_LAST", "FOLD_NORMS", "FUSED_CONV", "SEGMENT_NMS", "DECODE_PROCESS", "BATCH_HANDOFF",
          "OPENCV_DECODE", "FREEZE_GC", "SHORT_GIL_SWITCH", "PER_LEVEL_RPN_NMS", "DENSE_RPN_NMS", "FLOAT32_GROUP_NORM")


def ours(video: Path, person_det, clothing_det, frames: int, batch_size: int, device: str, out: Path,
         precision: str) -> dict:
    import torch

    from yeay_nb.infer import run_inference

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    s = run_inference(video, out, clothing_det, person_det, max_frames=frames, batch_size=batch_size,
                      device=device, clobber=True, progress=False, precision=precision)
    assert s.done and not s.failed, s.failed
    doc = json.loads(s.outputs[0].read_text())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"frames": s.frames, "seconds": s.seconds, "fps": s.fps, "doc": doc, "peak_gib": peak,
            "stages": {k: round(v, 3) for k, v in s.stage_seconds.items()}}


def _median(values: list) -> float:
    import statistics

    return float(statistics.median(values))


# --------------------------------------------------------------------------- comparison
def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(naive_res: dict, doc: dict, frames: int) -> dict:
    """Greedy matching per frame and class (box IoU >= 0.5, best first); masks by mask IoU."""
    from pycocotools import mask as mask_utils

    by_frame: dict = {}
    for it in doc["items"]:
        if it[0] < frames:
            by_frame.setdefault((it[0], it[1]), []).append(it)
    matched, ious, dscore = 0, [], []
    for it in naive_res["items"]:
        cands = by_frame.get((it[0], it[1]), [])
        best = max(cands, key=lambda c: _iou(c[3], it[3]), default=None)
        if best is not None and _iou(best[3], it[3]) >= 0.5:
            cands.remove(best)
            matched += 1
            ious.append(_iou(best[3], it[3]))
            dscore.append(abs(best[2] - it[2]))
    n_naive = len(naive_res["items"])
    n_ours = sum(1 for it in doc["items"] if it[0] < frames)
    mask_ious, mask_matched, n_masks = [], 0, 0
    for f in range(frames):
        ref = naive_res["masks"][f]
        mine = list(doc["coco_rle_masks"][f][0]) if f < len(doc["coco_rle_masks"]) else []
        n_masks += len(ref)
        for r in ref:
            if not mine:
                break
            rr = {"size": r["size"], "counts": r["counts"].encode()}
            mm = [{"size": m["size"], "counts": m["counts"].encode()} for m in mine]
            iou = mask_utils.iou(mm, [rr], [0]).ravel()
            j = int(np.argmax(iou))
            if iou[j] >= 0.5:
                mask_matched += 1
                mask_ious.append(float(iou[j]))
                mine.pop(j)
    ious_a, mask_a = np.array(ious or [0.0]), np.array(mask_ious or [0.0])
    return {
        "items_naive": n_naive, "items_ours": n_ours, "items_matched": matched,
        "match_rate": round(matched / max(n_naive, 1), 4),
        "box_iou_ge_0.99": round(float((ious_a >= 0.99).mean()), 4), "box_iou_min": round(float(ious_a.min()), 4),
        "score_absdiff_max": round(float(max(dscore or [0.0])), 4),
        "score_absdiff_p99": round(float(np.percentile(dscore or [0.0], 99)), 4),
        "masks_naive": n_masks, "masks_matched": mask_matched,
        "mask_iou_ge_0.98": round(float((mask_a >= 0.98).mean()), 4), "mask_iou_median": round(float(np.median(mask_a)), 4),
        "masks_per_frame": round(n_masks / max(frames, 1), 2),
    }


# --------------------------------------------------------------------------- breakdown
def breakdown(video: Path, person_det, clothing_det, frames: int, batch_size: int, device: str,
              profile_path: Path | None, precision: str) -> dict:
    """Where the time goes: decode alone, the two models alone on decoded frames (at ``precision``,
    with its TF32 switches as run_inference sets them), FLOPs per frame."""
    import torch

    from yeay_nb import fastpath
    from yeay_nb.infer import _forward_batch
    from yeay_nb.video import VideoReader

    t0 = time.perf_counter()
    with VideoReader(video) as r:
        decoded = [rgb for _, rgb in r.frames(max_frames=frames)]
        size = (r.info.height, r.info.width)
    decode_fps = len(decoded) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for rgb in decoded:
        scoring.laplacian_variance(rgb)
    blur_fps = len(decoded) / (time.perf_counter() - t0)
    pid = person_det.classes.index("person")
    dets = [clothing_det, person_det]
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def run_all():
        for s in range(0, len(decoded) - batch_size + 1, batch_size):
            _forward_batch(dets, decoded[s:s + batch_size], size, device, person_det, [pid], 0.5, precision)
        sync()

    run_all()
    t0 = time.perf_counter()
    run_all()
    n = (len(decoded) // batch_size) * batch_size
    models_fps = n / (time.perf_counter() - t0)
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            _forward_batch(dets, decoded[:batch_size], size, device, person_det, [pid], 0.5, precision)
        flops = fc.get_total_flops() / batch_size
    except Exception as e:  # the counter does not know every op; the timing stands without it
        print(f"[bench] flop count failed: {e}")
    if profile_path is not None:  # models one after the other, so each kernel belongs to one stage
        from torch.profiler import ProfilerActivity, profile

        fastpath.CONCURRENT_MODELS = False
        try:
            run_all()
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                t0 = time.perf_counter()
                run_all()
                wall = time.perf_counter() - t0
        finally:
            fastpath.CONCURRENT_MODELS = True
        key = "cuda_time_total" if cuda else "cpu_time_total"
        ev = prof.key_averages()
        stages = [e for e in ev if e.key.startswith("yeay.")]
        lines = [f"profiled: {n} frames, batch {batch_size}, both models one after the other, {wall:.3f} s wall "
                 f"(under the profiler)", "", f"{'stage':<22}{'calls':>7}{'CPU total ms':>14}{'GPU total ms':>14}"]
        for e in sorted(stages, key=lambda e: e.key):
            gpu = getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0.0))
            lines.append(f"{e.key:<22}{e.count:>7}{e.cpu_time_total / 1e3:>14.1f}{gpu / 1e3:>14.1f}")
        profile_path.write_text("\n".join(lines) + "\n\n" + ev.table(sort_by=key, row_limit=45) + "\n\n"
                                + ev.table(sort_by="cpu_time_total", row_limit=30))
        print("\n".join(lines), flush=True)
    return {"decode_fps": round(decode_fps, 1), "blur_fps": round(blur_fps, 1), "models_only_fps": round(models_fps, 2),
            "gflops_per_frame": round(flops / 1e9, 1) if flops else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=None, help="default: juggle.mp4 resized to 960x540 (or the tiny synthetic)")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--naive-frames", type=int, default=48)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--test-size", type=int, nargs=2, default=[500, 833], metavar=("MIN", "MAX"))
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--logit-std", type=float, default=4.0, help="class-logit spread of the calibrated models")
    ap.add_argument("--large", nargs="*", default=[], help="more videos (1080p, 4K) run by ours only: fps, memory")
    ap.add_argument("--device", default=None)
    ap.add_argument("--ablate", nargs="*", default=None, metavar="SWITCH",
                    help="also run with each fast-path switch flipped in turn (all, or the ones named)")
    ap.add_argument("--profile", default=None, help="write a profiler table of the models here")
    from yeay_nb.fastpath import DEFAULT_PRECISION

    ap.add_argument("--precision", default=DEFAULT_PRECISION, choices=["bf16", "fp16", "tf32"],
                    help="precision of the 'ours' rows, the ablations and the breakdown (default: the product's, "
                         f"{DEFAULT_PRECISION})")
    ap.add_argument("--precisions", nargs="*", default=["bf16", "fp16", "tf32"], choices=["bf16", "fp16", "tf32"],
                    help="also time these precisions (other than --precision) at the best batch size and check them "
                         "against the naive loop (fp32 is always timed and checked: ours_fp32, check_fp32)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per row, median reported (default: 3 on a GPU, 1 on a CPU)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke mode: tiny synthetic video, resnet18")
    ap.add_argument("--trained", default=None, metavar="CKPT",
                    help="use a trained Mask R-CNN checkpoint with a 'person' class for both models (its box part "
                         "as the clothing model) instead of the calibrated random ones")
    ap.add_argument("--person", choices=["trained", "calibrated"], default="trained",
                    help="with --trained: the person model from that checkpoint, or the calibrated folded-BN one "
                         "(torchvision's COCO layout): the production pair's layouts, a COCO person model beside a GN "
                         "clothing model (the agreement checks then include an untrained model's fragile scores)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from yeay_nb.infer import load_detector

    torch.backends.cudnn.benchmark = True
    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    repeat = args.repeat or (3 if device.startswith("cuda") else 1)
    if repeat < 1:
        ap.error("--repeat must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-gpu-"))
    atexit.register(shutil.rmtree, tmp, True)  # checkpoints + videos: ~230 MB a run
    if args.tiny:
        from yeay_nb.synth.videos import make_videos

        args.backbone, args.test_size, args.frames, args.naive_frames = "resnet18", [128, 224], 6, 6
        args.batch_sizes = [3]
        video = make_videos(tmp / "v", num_videos=1, num_frames=6, size=(240, 136), seed=5)[0]
        torch.set_num_threads(2)
    else:
        video = Path(args.video) if args.video else ROOT / ".device" / "videos" / "juggle_960x540.mp4"
    from yeay_nb.video import VideoReader

    with VideoReader(video) as r:
        calib = next(iter(r.frames(max_frames=1)))[1]
    if args.trained:
        person_ckpt, clothing_ckpt = trained_checkpoints(tmp, Path(args.trained), *args.test_size)
        weights = f"trained: {args.trained}"
        if args.person == "calibrated":
            (tmp / "calibrated").mkdir()
            (person_ckpt,) = make_checkpoints(tmp / "calibrated", args.backbone, *args.test_size, args.logit_std, calib,
                                              which=("person",))
            weights += ", person model calibrated"
    else:
        person_ckpt, clothing_ckpt = make_checkpoints(tmp, args.backbone, *args.test_size, args.logit_std, calib)
        weights = "untrained, calibrated on frame 0"
    result: dict = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor(),
                    "torch": torch.__version__, "video": str(video), "backbone": args.backbone, "weights": weights,
                    "test_size": args.test_size, "precision": args.precision, "date": time.strftime("%Y-%m-%d")}
    print(f"[bench] {result}", flush=True)
    result["repeat"] = repeat
    nv_runs = [naive(video, person_ckpt, clothing_ckpt, args.naive_frames, device, tmp / "naive.json")
               for _ in range(repeat)]
    nv = nv_runs[0] | {"fps": _median([r["fps"] for r in nv_runs])}  # the first run's items for the checks
    result["naive"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in nv.items()
                       if k in ("frames", "seconds", "fps")} | {"fps_runs": [round(r["fps"], 2) for r in nv_runs]}
    print(f"[bench] naive: {result['naive']}", flush=True)
    person = load_detector(str(person_ckpt), device)
    clothing = load_detector(str(clothing_ckpt), device)
    result["models"] = {name: {k: det.config.get(k) for k in ("arch", "backbone", "norm")}
                        for name, det in (("person", person), ("clothing", clothing))}

    def timed(p, c, bs, name, precision=args.precision):
        """``repeat`` timed runs (after a warm-up: cuDNN autotunes each new input shape once per model
        thread): the first run's result with the median frames/s and every run's."""
        ours(video, p, c, 2 * bs, bs, device, tmp / "warm", precision)
        runs = [ours(video, p, c, args.frames, bs, device, tmp / f"{name}_{k}", precision) for k in range(repeat)]
        return runs[0] | {"fps": _median([r["fps"] for r in runs]), "fps_runs": [round(r["fps"], 2) for r in runs],
                          "stages_runs": [r["stages"] for r in runs],
                          "peak_gib": max((r["peak_gib"] or 0) for r in runs) or None}

    result["ours"] = []
    check = None
    for bs in args.batch_sizes:
        r = timed(person, clothing, bs, f"ours{bs}")
        row = {"batch_size": bs, "frames": r["frames"], "seconds": round(r["seconds"], 3), "fps": round(r["fps"], 2),
               "fps_runs": r["fps_runs"], "speedup": round(r["fps"] / nv["fps"], 2),
               "peak_gib": r["peak_gib"] and round(r["peak_gib"], 2), "stages_s": r["stages_runs"]}
        result["ours"].append(row)
        print(f"[bench] ours: {row}", flush=True)
        if check is None:
            check = compare(nv, r["doc"], nv["frames"])
    result["check"] = check
    from yeay_nb import fastpath

    # both sides in true fp32 (TF32 off too): what differs then is a bug, not rounding
    with fastpath.precision_flags("fp32"):
        nv32 = naive(video, person_ckpt, clothing_ckpt, min(16, nv["frames"]), device, tmp / "naive32.json")
    best_bs = min(max(args.batch_sizes), 48)  # fp32 activations: twice the memory of bf16
    ours(video, person, clothing, best_bs, best_bs, device, tmp / "warm", precision="fp32")
    # all frames, so that the fp32 path's own rate is measured too (compare() looks at the first ones)
    r = ours(video, person, clothing, args.frames, best_bs, device, tmp / "fp32", precision="fp32")
    result["ours_fp32"] = {"batch_size": best_bs, "frames": r["frames"], "fps": round(r["fps"], 2),
                           "speedup": round(r["fps"] / nv["fps"], 2)}
    print(f"[bench] ours in fp32 (precision='fp32', no TF32): {result['ours_fp32']}", flush=True)
    result["check_fp32"] = compare(nv32, r["doc"], nv32["frames"]) | {"batch_size": best_bs}
    print(f"[bench] check vs naive, both in fp32 without TF32: {result['check_fp32']}", flush=True)
    print(f"[bench] check vs naive: {check}", flush=True)
    best = max(result["ours"], key=lambda r: r["fps"])
    _brief = ("match_rate", "box_iou_ge_0.99", "mask_iou_ge_0.98", "mask_iou_median", "score_absdiff_p99")

    def alternated(bs: int, name: str, other) -> dict:
        """``repeat`` runs at the defaults alternated with ``repeat`` runs ``other(k)``: a drift of the card
        or host over the minutes of the benchmark then moves both medians alike (a single run after the
        others read up to 25% off; a precision row timed after the headline 0.83-1.29x of it, 2026-11-28).
        Both rates, their ratio, what ``other`` does to the agreement with the naive loop, and the stages."""
        base_runs, runs = [], []
        for k in range(repeat):
            base_runs.append(ours(video, person, clothing, args.frames, bs, device, tmp / f"{name}_base{k}", args.precision))
            runs.append(other(k))
        c = compare(nv, runs[0]["doc"], nv["frames"])
        fps, base_fps = _median([r["fps"] for r in runs]), _median([r["fps"] for r in base_runs])
        return {"batch_size": bs, "fps": round(fps, 2), "fps_runs": [round(r["fps"], 2) for r in runs],
                "default_fps": round(base_fps, 2), "default_runs": [round(r["fps"], 2) for r in base_runs],
                "vs_default": round(fps / base_fps, 3), **{k: c[k] for k in _brief},
                # where each run's wall time went (InferSummary.stage_seconds): did a lever move the wait?
                "stages_s": [r["stages"] for r in runs], "default_stages_s": [r["stages"] for r in base_runs]}

    result["precisions"] = []
    for prec in [p for p in dict.fromkeys(args.precisions) if p != args.precision]:
        # each against the same naive loop as the headline (float32, cuDNN's default TF32)
        bs = min(best["batch_size"], 48)  # float32 activations: twice bf16's memory
        ours(video, person, clothing, 2 * bs, bs, device, tmp / "warm", prec)
        row = {"precision": prec, **alternated(bs, "prec", lambda k: ours(
            video, person, clothing, args.frames, bs, device, tmp / f"prec_{prec}{k}", prec))}
        row["speedup"] = round(row["fps"] / nv["fps"], 2)
        result["precisions"].append(row)
        print(f"[bench] precision: {row}", flush=True)
    result["ablations"] = []
    bs = best["batch_size"]
    for flag in (args.ablate or LEVERS) if args.ablate is not None else ():
        default = getattr(fastpath, flag)
        # some switches act when a model is prepared (load time), others while it runs: both under it
        flipped = lambda: mock.patch.object(fastpath, flag, not default)  # noqa: E731
        with flipped():
            p2, c2 = load_detector(str(person_ckpt), device), load_detector(str(clothing_ckpt), device)
            ours(video, p2, c2, 2 * bs, bs, device, tmp / "warm", args.precision)

        def flipped_run(k):
            with flipped():
                return ours(video, p2, c2, args.frames, bs, device, tmp / f"abl_{flag}{k}", args.precision)

        row = {"switch": flag, "to": not default, **alternated(bs, "abl", flipped_run)}
        result["ablations"].append(row)
        print(f"[bench] ablation: {row}", flush=True)
        del p2, c2
    with fastpath.precision_flags(args.precision):
        result["breakdown"] = breakdown(video, person, clothing, min(args.frames, 4 * best["batch_size"]),
                                        best["batch_size"], device, Path(args.profile) if args.profile else None,
                                        args.precision)
    print(f"[bench] breakdown: {result['breakdown']}", flush=True)
    result["large"] = []
    for v in args.large:
        ours(Path(v), person, clothing, 2 * best["batch_size"], best["batch_size"], device, tmp / "warm", args.precision)
        r = ours(Path(v), person, clothing, 10**9, best["batch_size"], device, tmp / f"large{len(result['large'])}",
                 args.precision)
        row = {"video": v, "dim": r["doc"]["video_dim"], "frames": r["frames"], "fps": round(r["fps"], 2),
               "peak_gib": r["peak_gib"] and round(r["peak_gib"], 2)}
        result["large"].append(row)
        print(f"[bench] large: {row}", flush=True)
    print(f"\n{'path':<22}{'frames/s':>10}{'x naive':>9}{'peak GiB':>10}")
    print(f"{'naive (batch 1 fp32)':<22}{nv['fps']:>10.2f}{1.0:>9.2f}{'':>10}")
    for row in result["ours"]:
        print(f"{'ours ' + args.precision + ' batch ' + str(row['batch_size']):<22}{row['fps']:>10.2f}{row['speedup']:>9.2f}"
              f"{row['peak_gib'] if row['peak_gib'] is not None else '':>10}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("naive", "check")} | {"best": best}))


if __name__ == "__main__":
    main()
