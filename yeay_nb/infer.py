"""Video inference: frames -> clothing model + person model -> one contract JSON per video.

Usage (Python, as notebook 04 does)::

    from yeay_nb.infer import run_inference
    summary = run_inference("videos/", "work/infer", "work/train/model_final.pt",
                            person_model="same", stride=2, create_vis=True)
    print(summary)            # videos done / skipped / failed, frames/s

Usage (CLI)::

    yeay-nb infer --input feed.json --output-dir out --clothing-model model_final.pt \
        --person-model coco --url-rewrite https://cdn.example.net=s3://bucket --create-vis

Each video is decoded once (in a background thread) and fed in batches to every model
that a requested step needs: the ``clothing`` step makes ``items`` and the best frames,
the ``person`` step makes ``coco_rle_masks``. ``--person-model same`` takes both from one
forward pass of a Mask R-CNN whose classes include ``person``. Outputs are written
atomically, pictures first and the JSON last, so a JSON on disk means "this video is done":
a killed run leaves no half file and a re-run continues. Running only one step into an
existing JSON keeps the other step's fields (merging). A bad video goes to
``failures.jsonl`` and the run goes on. Under ``torchrun`` (RANK, WORLD_SIZE) each process
takes ``sorted(manifest)[rank::world_size]``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import scoring
from .atomic import write_json
from .contract import SCHEMA_VERSION
from .errors import CheckpointError, ParamsError, VideoError, YeayError
from .fastpath import DEFAULT_PRECISION, PRECISIONS, frozen_gc, gil_switch, precision_flags
from .video import VideoReader, VideoSource, fetch, prefetch, resolve_sources, shard, world_from_env

STEPS = ("clothing", "person")
TOP_N = 5
TOP_ITEMS_PER_FRAME = 30
MASK_PIXEL_THRESH = 0.5  # Mask R-CNN mask probabilities -> binary mask

CLOTHING_KEYS = ("classesInDS", "items", "top_N_frames", "top_frames_each_class")
PERSON_KEYS = ("mask_classes", "coco_rle_masks", "mask_scores")


# --------------------------------------------------------------------------- models
@dataclass
class Detector:
    """A detection model with its class names (index 0 ``__background__``).

    ``model`` is a torchvision-style detector in eval mode: a list of CHW float tensors in
    [0, 1] in, a list of dicts with ``boxes``, ``labels``, ``scores`` (and ``masks``) out.
    """

    model: Any
    classes: list[str]
    source: str = "<memory>"
    config: dict = field(default_factory=dict)
    sha256: str | None = None
    prepared: bool = False  # model already made ready by yeay_nb.fastpath.prepare_model
    _copies: dict = field(default_factory=dict, repr=False, compare=False)

    def for_inference(self, device: str) -> "Detector":
        """This detector with its model prepared for the fast path on ``device``
        (:func:`yeay_nb.fastpath.prepare_model`). A model handed in from memory is copied first, so
        the caller's model (e.g. one still being trained) is never changed."""
        from . import fastpath

        if self.prepared or not fastpath.is_rcnn(self.model):
            return self
        if device not in self._copies:
            import copy

            model = fastpath.prepare_model(copy.deepcopy(self.model), device)
            self._copies[device] = Detector(model=model, classes=self.classes, source=self.source,
                                            config=self.config, sha256=self.sha256, prepared=True)
        return self._copies[device]

    @property
    def has_masks(self) -> bool:
        roi = getattr(self.model, "roi_heads", None)
        return bool(roi is not None and getattr(roi, "has_mask", lambda: False)())

    def describe(self) -> dict:
        d: dict[str, Any] = {"source": self.source, "classes": list(self.classes)}
        if self.sha256:
            d["sha256"] = self.sha256
        if self.config:
            d["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.items()}
        return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_detector(spec: Any, device: Any = "cpu", score_floor: float = 0.05, **overrides) -> Detector:
    """A :class:`Detector` from a checkpoint path, ``"coco"`` (torchvision's COCO Mask R-CNN),
    a ``(model, classes)`` pair or a Detector (returned as is).

    The model's own score threshold is lowered to ``score_floor`` so that every item the
    contract wants comes out of it.
    """
    if isinstance(spec, Detector):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) >= 2 and not isinstance(spec[0], str):
        return Detector(model=spec[0].to(device).eval(), classes=list(spec[1]),
                        config=dict(spec[2]) if len(spec) > 2 else {})
    from . import fastpath, models

    if str(spec) == "coco":
        from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

        model = fastpath.prepare_model(models.coco_person_model(device, box_score_thresh=score_floor, **overrides),
                                       device)
        classes = list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
        return Detector(model=model, classes=classes, source="coco:MaskRCNN_ResNet50_FPN_Weights.COCO_V1",
                        prepared=True)
    path = Path(spec)
    if not path.is_file():
        raise CheckpointError(f"model checkpoint not found: {path}")
    model, classes, cfg = models.load_model(path, device=device, box_score_thresh=score_floor, **overrides)
    if fastpath.is_rcnn(model):
        model = fastpath.prepare_model(model, device)
    return Detector(model=model, classes=classes, source=str(path.resolve()), config=cfg, sha256=_sha256(path),
                    prepared=fastpath.is_rcnn(model))


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda:LOCAL_RANK`` when available (one card per torchrun process), else ``cpu``."""
    import torch

    if device in (None, "", "auto"):
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return str(device)


def selective_mask_forward(model: Any, images: list, mask_label_ids: Sequence[int], mask_thresh: float) -> list[dict]:
    """A torchvision Mask R-CNN forward pass on a list of CHW float images (any sizes) that runs
    the mask branch only for ``mask_label_ids`` detections scoring at least ``mask_thresh``.

    The transform is torchvision's own; the rest is :func:`yeay_nb.fastpath.detect` (outputs:
    ``boxes``, ``labels``, ``scores`` for all detections, ``masks`` K×1×H×W and ``mask_index``).
    """
    from .fastpath import detect

    image_list, _ = model.transform(images)
    return detect(model, image_list, [tuple(img.shape[-2:]) for img in images], mask_label_ids, mask_thresh)


def _forward_batch(dets: Sequence[Detector], frames: list, original_size: tuple[int, int], device: str,
                   mask_det: Detector | None, mask_label_ids: Sequence[int], mask_thresh: float,
                   precision: str = DEFAULT_PRECISION) -> dict:
    """Every detector on one batch of same-size uint8 RGB frames, results on the host:
    ``{id(det): (per-frame (boxes, scores, labels), per-frame per-class (RLEs, scores) or None)}``.

    R-CNNs take :func:`yeay_nb.fastpath.run_models` (shared upload, bf16, a thread and stream
    per model on CUDA); any other torchvision-style detector gets a list of float tensors.
    """
    import torch

    from . import fastpath

    rcnn = [d for d in dets if fastpath.is_rcnn(d.model)]
    res: dict = {}
    if rcnn:
        got = fastpath.run_models([d.model for d in rcnn], frames, original_size, device,
                                  mask_det.model if mask_det is not None else None, mask_label_ids, mask_thresh,
                                  MASK_PIXEL_THRESH, precision=precision)
        res.update({id(d): got[id(d.model)] for d in rcnn})
    for det in dets:
        if det in rcnn:
            continue
        with torch.inference_mode():
            tensors = [torch.from_numpy(f).to(device).permute(2, 0, 1).float().div_(255.0) for f in frames]
            outs = det.model(tensors)
            host = fastpath.detections_to_host(outs)
            res[id(det)] = (host, fastpath.masks_to_rles(outs, host, mask_label_ids, mask_thresh, MASK_PIXEL_THRESH)
                            if det is mask_det else None)
    return res


def _encode_rle(mask_bool) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask_bool.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(rle["size"][0]), int(rle["size"][1])]}


def _decode_rle(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _items_from(det: tuple, frame_index: int, score_floor: float) -> list[list]:
    """Contract items ``[frame, class, score, [x1, y1, x2, y2]]`` from host (boxes, scores, labels),
    scores rounded to 6 and coordinates to 3 decimals (vectorised: 100 items a frame at 250 frames/s)."""
    boxes, scores, labels = det
    keep = (scores >= score_floor) & (labels > 0)
    cls = labels[keep].tolist()
    sc = np.round(scores[keep].astype(np.float64), 6).tolist()
    bx = np.round(boxes[keep].astype(np.float64), 3).tolist()
    f = int(frame_index)
    return [[f, c, s, b] for c, s, b in zip(cls, sc, bx)]


_POOLS: dict = {}


def _pool(name: str, workers: int):
    """A long-lived thread pool, made on first use: ``blur`` scores frames (OpenCV frees the GIL),
    ``batch`` runs the models on one batch while the caller collects the last one."""
    from concurrent.futures import ThreadPoolExecutor

    if name not in _POOLS:
        _POOLS[name] = ThreadPoolExecutor(workers, thread_name_prefix=f"yeay-{name}")
    return _POOLS[name]


# --------------------------------------------------------------------------- results
@dataclass
class InferSummary:
    """What a run did. ``str(summary)`` is the one-line report the CLI prints."""

    output_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    frames: int = 0  # frames run through the models
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    # where the wall time went, summed over videos: "start" (fetch, open, up to the loop), "wait_frames"
    # (the loop waiting for decoded frames), "wait_models" (waiting for a batch's results), "collect"
    # (items, masks and blur per frame), "finish" (scores, best frames, the document) and "write" (the JSON)
    stage_seconds: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        st = self.stage_seconds
        waits = (f"; waited {st.get('wait_frames', 0.0):.1f} s for frames, {st.get('wait_models', 0.0):.1f} s "
                 "for the models") if self.frames and st else ""
        return (f"videos done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}; "
                f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} frames/s){waits} -> {self.output_dir}")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_failure(output_dir: Path, source: VideoSource, error: BaseException) -> dict:
    """Append one line to ``failures.jsonl`` (one ``write`` of one line: O_APPEND keeps lines
    whole even when several ranks append at once)."""
    rec = {"video_id": source.video_id, "video_loc": source.loc, "video_src": source.src,
           "error": type(error).__name__, "reason": str(error), "at": _utc_now(),
           "rank": int(os.environ.get("RANK", 0))}
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "failures.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def _load_existing(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # atomic writes make a broken file unlikely; if one exists, recompute it
    return doc if isinstance(doc, dict) else None


def _steps_of(doc: dict) -> set[str]:
    if "steps" in doc:
        return set(doc["steps"])
    # a 2018 file: items mean clothing, masks mean person
    return {"clothing"} | ({"person"} if "coco_rle_masks" in doc else set())


# --------------------------------------------------------------------------- one video
@dataclass
class _Plan:
    clothing: Detector | None
    person: Detector | None
    mask_classes: list[str]
    mask_label_ids: list[int]


def _process_video(src: VideoSource, out_json: Path, plan: _Plan, existing: dict | None, *, opts: dict,
                   device: str, frame_bar) -> tuple[dict, int]:
    """Fetch (remote: a temporary download), decode, run the models, score, draw."""
    with fetch(src.loc, tmp_dir=opts.get("tmp_dir"), storage_options=opts.get("storage_options")) as path:
        return _process_local(path, src, out_json, plan, existing, opts=opts, device=device, frame_bar=frame_bar)


def _process_local(path: Path, src: VideoSource, out_json: Path, plan: _Plan, existing: dict | None, *,
                   opts: dict, device: str, frame_bar) -> tuple[dict, int]:
    """Decode, run the models, score, draw; returns (document, frames processed)."""
    from . import vis

    t_start = time.perf_counter()
    stages = opts.get("stages")  # InferSummary.stage_seconds, or None

    clothing, person = plan.clothing, plan.person
    same = clothing is not None and person is clothing
    dets = [d for d in ([clothing] if clothing else []) + ([person] if person and not same else [])]
    stride, max_frames, batch_size = opts["stride"], opts["max_frames"], opts["batch_size"]
    frame_indices: list[int] = []
    blur_raw: list[float] = []
    items: list[list] = []
    rles: list[list] = []
    mask_scores: list[list] = []
    vis_dir = out_json.parent / src.video_id
    with VideoReader(path, rotate=opts["rotate"]) as reader:
        info = reader.info
        writer = None
        if opts["output_video"]:
            fps_out = (info.fps / stride) if info.fps else 10.0
            writer = vis.AnnotatedVideoWriter(vis_dir / "annotated.mp4", info.width, info.height, fps_out)
        header = info.header_frames or None
        total = None if header is None else len(range(0, min(header, max_frames or header), stride))
        if frame_bar is not None:
            frame_bar.reset(total=total)
            frame_bar.set_description(src.video_id[:30])

        from . import fastpath

        specs = [fastpath.InputSpec.of(d.model) for d in dets if fastpath.is_rcnn(d.model)]
        # frames far larger than every network input (1080p, 4K) are shrunk on the CPU first
        presize = max(specs, key=lambda sp: sp.resized(info.height, info.width)) \
            if len(specs) == len(dets) and specs else None
        keep_full = writer is not None
        blur_pool = _pool("blur", max(1, min(4, (os.cpu_count() or 2) - 1)))

        opencv = _opencv_decode(device)

        def frames_with_blur() -> Iterator[tuple]:
            # runs in the decode thread, overlapping the models; the blur scores (~1.3 ms a 960x540 frame on
            # the H200 host, 6.5 ms with the 2018 formula) run in a small pool of their own (OpenCV frees the GIL)
            for i, rgb in reader.frames(stride=stride, max_frames=max_frames, opencv=opencv):
                net = fastpath.cpu_presize(rgb, presize) if presize is not None else rgb
                blur = blur_pool.submit(scoring.laplacian_variance, rgb)
                yield i, (rgb if keep_full else None), blur, net, None

        # (frame index, full frame or None, blur score's future, the models' frame, its ring slot or None)
        source = None if keep_full else _decode_process(path, info, presize, batch_size, opts, device)

        def batches() -> Iterator[list]:
            if source is not None:  # the decode process: frames in shared memory, no thread here
                groups = _grouped(((i, None, _Ready(blur), net, slot) for i, net, blur, slot in source), batch_size)
            elif fastpath.BATCH_HANDOFF:  # the decode thread groups the frames: one queue item a batch
                groups = prefetch(_grouped(frames_with_blur(), batch_size), maxsize=2)
            else:
                groups = _grouped(prefetch(frames_with_blur(), maxsize=2 * batch_size), batch_size)
            try:
                yield from groups
            finally:
                groups.close()  # stops and joins the decode thread
                if source is not None:
                    source.close()  # stops the worker's decoding if still going; frees the ring

        size = (info.height, info.width)

        def collect(batch: list, outs: dict) -> None:
            host_dets = outs[id(clothing)][0] if clothing is not None else None
            host_masks = outs[id(person)][1] if person is not None else None
            for k, (i, rgb, lap, _, _) in enumerate(batch):
                frame_indices.append(i)
                blur_raw.append(lap.result())
                frame_items: list = []
                bins: list = []
                if host_dets is not None:
                    frame_items = _items_from(host_dets[k], i, opts["score_floor"])
                    items.extend(frame_items)
                if host_masks is not None:
                    rles.append([r for r, _ in host_masks[k]])
                    mask_scores.append([sc for _, sc in host_masks[k]])
                    if writer is not None:
                        bins = [_decode_rle(r) for rs, _ in host_masks[k] for r in rs]
                if writer is not None:
                    writer.write(vis.annotate_frame(rgb, frame_items, clothing.classes if clothing else [],
                                                    opts["thresh"], bins))
            if frame_bar is not None:
                frame_bar.update(len(batch))

        def finish_batch(pending: tuple) -> float:
            """Waits for a batch's results (their slots go back to the ring), collects it; returns now."""
            since = time.perf_counter()
            outs = pending[1].result()
            since = _add_stage(stages, "wait_models", since)
            if source is not None:  # the models are done with these frames
                for b in pending[0]:
                    source.release(b[4])
            collect(pending[0], outs)
            return _add_stage(stages, "collect", since)

        batch_iter = batches()
        in_flight = None  # (batch, future): the models work on batch k+1 while batch k is collected here
        t = _add_stage(stages, "start", t_start)
        try:
            for batch in batch_iter:
                t = _add_stage(stages, "wait_frames", t)
                fut = _pool("batch", 1).submit(_forward_batch, dets, [b[3] for b in batch], size, device, person,
                                               plan.mask_label_ids, opts["mask_thresh"], opts["precision"])
                previous, in_flight = in_flight, (batch, fut)  # the newest first: `finally` waits for it
                if previous is not None:
                    t = finish_batch(previous)
            if in_flight is not None:
                t = finish_batch(in_flight)
                in_flight = None
            if writer is not None:
                writer.close()  # moves the finished mp4 into place
                writer = None
        finally:
            if in_flight is not None:  # an error: let the models finish before the reader closes
                with contextlib.suppress(Exception):
                    in_flight[1].result()
            batch_iter.close()  # the decode thread must stop before the reader closes
            if source is not None:  # no model reads a frame any more (in_flight is done): unmap the ring now,
                source.abandon()    # also where an error left frames unreleased
            if writer is not None:
                writer.abort()
        fcnt = reader.decoded if source is None else source.decoded

    blur = [round(v, 6) for v in scoring.normalize_blur(blur_raw)]
    doc: dict[str, Any] = {
        "video_id": src.video_id,
        "video_loc": src.loc,
        "video_dim": [int(info.width), int(info.height)],
        "video_fps": float(info.fps),
        "video_fcnt": int(fcnt),
        "video_rotation": int(info.rotation),
        "classifiedAt": _utc_now(),
        "schema_version": SCHEMA_VERSION,
        "frame_indices": frame_indices,
        "blur_scores": [[[b]] for b in blur],
    }
    if src.src != src.loc:
        doc["video_src"] = src.src
    models_used: dict = {}
    steps = set()
    if clothing is not None:
        steps.add("clothing")
        blur_by_frame = dict(zip(frame_indices, blur))
        best_frames, best_boxes = scoring.best_box_per_class(items, len(clothing.classes), blur_by_frame,
                                                             (info.width, info.height))
        doc.update({"classesInDS": list(clothing.classes), "items": items,
                    "top_N_frames": scoring.top_n_frames(items, frame_indices, TOP_N, TOP_ITEMS_PER_FRAME),
                    "top_frames_each_class": [best_frames, best_boxes]})
        models_used["clothing"] = clothing.describe()
    if person is not None:
        steps.add("person")
        doc.update({"mask_classes": list(plan.mask_classes), "coco_rle_masks": rles, "mask_scores": mask_scores})
        models_used["person"] = person.describe()
    doc = _merge(doc, existing, steps, models_used, out_json)
    doc["params"] = {k: opts[k] for k in ("score_floor", "thresh", "mask_thresh", "stride", "max_frames", "rotate",
                                          "precision")}
    if opts["create_vis"] and "clothing" in doc.get("steps", []):
        vis.write_video_pictures(doc, path, out_dir=vis_dir, thresh=opts["thresh"])
    _add_stage(stages, "finish", t)
    return doc, len(frame_indices)


def _grouped(items: Iterator, n: int) -> Iterator[list]:
    """Lists of ``n`` consecutive items (the last one shorter); closing it closes ``items``."""
    buf: list = []
    try:
        for x in items:
            buf.append(x)
            if len(buf) == n:
                yield buf
                buf = []
        if buf:
            yield buf
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


class _Ready:
    """A blur score that is already known, with a future's ``result()``."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def result(self) -> float:
        return self.value


DECODE_SLOTS_PER_BATCH = 3  # the ring: a batch with the models, one being gathered, one decoded ahead
_DECODE_FALLBACK_SAID: set = set()


def _decode_process(path: Path, info: Any, presize: Any, batch_size: int, opts: dict, device: str):
    """A :class:`~yeay_nb.decode_worker.DecodedFrames` for this video when the decode process pays
    (a CUDA device, ``fastpath.DECODE_PROCESS``) and the ring fits in shared memory; else None (the
    caller decodes in a thread). Says once per reason why it fell back."""
    from . import decode_worker, fastpath

    if not _decode_in_process(device):
        return None
    h, w = int(info.height), int(info.width)
    if presize is not None:
        h, w = fastpath.presized_size(h, w, presize)
    slots = DECODE_SLOTS_PER_BATCH * batch_size
    need, room = slots * h * w * 3, decode_worker.shared_memory_room()
    if need > room // 2:
        reason, why = "memory", f"its ring needs {need / 2**20:.0f} MiB of shared memory, /dev/shm has {room / 2**20:.0f} free"
    else:
        try:
            return decode_worker.DecodedFrames(str(path), shape=(h, w, 3), slots=slots, rotate=opts["rotate"],
                                               stride=opts["stride"], max_frames=opts["max_frames"], presize=presize,
                                               chunk=batch_size)
        except decode_worker.WorkerUnavailable as e:
            reason, why = "start", str(e)
    if reason not in _DECODE_FALLBACK_SAID:
        _DECODE_FALLBACK_SAID.add(reason)
        print(f"[yeay-nb] decoding in a thread, not in the decode process: {why}", file=sys.stderr)
    return None


def _opencv_decode(device: str) -> bool:
    """The decode thread reads with OpenCV (``VideoReader.frames(opencv=True)``: one GIL-free call a
    frame) on CUDA, where the model threads keep the GIL busy (fastpath.OPENCV_DECODE switches it off)."""
    from . import fastpath

    return fastpath.OPENCV_DECODE and str(device).startswith("cuda")


def _decode_in_process(device: str) -> bool:
    """Whether videos decode in the decode process: on CUDA, where the models outrun a decode thread
    that shares the GIL with them (fastpath.DECODE_PROCESS switches it off). On a CPU the models are
    the slow part and a process would only add its start."""
    from . import fastpath

    return fastpath.DECODE_PROCESS and str(device).startswith("cuda")


def _add_stage(stages: dict | None, name: str, since: float) -> float:
    """Adds the time since ``since`` to ``stages[name]`` (if keeping them); returns now."""
    now = time.perf_counter()
    if stages is not None:
        stages[name] = stages.get(name, 0.0) + (now - since)
    return now


def _merge(doc: dict, existing: dict | None, steps: set[str], models_used: dict, out_json: Path) -> dict:
    """Keep the other step's fields from an existing JSON (same frames required)."""
    kept_models = {}
    if existing is not None:
        old_steps = _steps_of(existing) - steps
        if old_steps:
            old_frames = existing.get("frame_indices", list(range(len(existing.get("blur_scores", [])))))
            if old_frames != doc["frame_indices"]:
                raise VideoError(f"cannot merge into {out_json}: its {'/'.join(sorted(old_steps))} results cover "
                                 "other frames (different --stride/--max-frames); re-run both steps with --clobber")
            for step in old_steps:
                for k in (CLOTHING_KEYS if step == "clothing" else PERSON_KEYS):
                    if k in existing:
                        doc[k] = existing[k]
                if step in existing.get("models", {}):
                    kept_models[step] = existing["models"][step]
            steps = steps | old_steps
            if "clothing" in old_steps:
                # the best-class scores use the blur scores: recompute them with this run's
                bb = dict(zip(doc["frame_indices"], (b[0][0] for b in doc["blur_scores"])))
                f, b = scoring.best_box_per_class(doc["items"], len(doc["classesInDS"]), bb, doc["video_dim"])
                doc["top_frames_each_class"] = [f, b]
    if "clothing" not in steps:  # a person-only file still satisfies the contract
        doc.update({"classesInDS": ["__background__"], "items": [], "top_N_frames": [],
                    "top_frames_each_class": [[-1], [None]]})
    doc["steps"] = [s for s in STEPS if s in steps]
    doc["models"] = {**kept_models, **models_used}
    return doc


# --------------------------------------------------------------------------- the run
def _build_plan(clothing_model, person_model, steps, mask_classes, device, score_floor) -> _Plan:
    want = set(steps) if steps else set(STEPS)
    bad = want - set(STEPS)
    if bad:
        raise ParamsError(f"unknown steps {sorted(bad)}; expected a subset of {list(STEPS)}", key="steps")
    clothing = None
    if "clothing" in want and clothing_model is not None:
        clothing = load_detector(clothing_model, device, score_floor)
    pm = person_model
    person = None
    if isinstance(pm, str) and pm.lower() == "none":
        want.discard("person")  # explicitly no person step
    if "person" in want:
        if pm == "same" or (pm is None and "clothing" not in want and clothing_model is not None):
            person = clothing if clothing is not None else load_detector(clothing_model, device, score_floor)
        elif pm is None and clothing is not None and clothing.has_masks and \
                all(c in clothing.classes for c in mask_classes):
            person = clothing  # default: a Mask R-CNN that knows `person` serves both steps
        elif pm is not None:
            person = load_detector(pm, device, score_floor)
    if person is not None:
        if not person.has_masks:
            raise CheckpointError(f"person model {person.source} has no mask head (needs a Mask R-CNN)")
        missing = [c for c in mask_classes if c not in person.classes]
        if missing:
            raise ParamsError(f"classes {missing} are not among the person model's classes "
                              f"({person.source})", key="mask_classes")
    if clothing is None and person is None:
        raise ParamsError("nothing to do: give a clothing model and/or a person model for the requested steps",
                          key="clothing_model")
    ids = [person.classes.index(c) for c in mask_classes] if person is not None else []
    if clothing is not None:  # fast-path copies, keeping "same" one model
        fast = clothing.for_inference(device)
        person = fast if person is clothing else person
        clothing = fast
    if person is not None and person is not clothing:
        person = person.for_inference(device)
    return _Plan(clothing, person, list(mask_classes), ids)


def run_inference(input: Any, output_dir: str | os.PathLike, clothing_model: Any = None, person_model: Any = None, *,
                  steps: Sequence[str] | None = None, score_floor: float = 0.05, thresh: float = 0.4,
                  mask_thresh: float = 0.5, mask_classes: Sequence[str] = ("person",), create_vis: bool = False,
                  output_video: bool = False, clobber: bool = False, shuffle: bool = False, stride: int = 1,
                  max_frames: int | None = None, rotate: str | int = "auto", id_in_filename: bool = False,
                  url_rewrite: Sequence[str] = (), batch_size: int = 8, device: str = "auto",
                  precision: str = DEFAULT_PRECISION, storage_options: dict | None = None, rank: int | None = None, world_size: int | None = None,
                  seed: int | None = None, progress: bool = True) -> InferSummary:
    """Run inference on every video of ``input``; write ``output_dir/<video_id>.json`` each.

    Usage::

        s = run_inference("feed.json", "out", "model_final.pt", person_model="coco",
                          url_rewrite=["https://cdn.example.net=s3://bucket"], max_frames=300)
        s.done, s.skipped, s.failed, s.fps

    ``clothing_model`` / ``person_model``: a checkpoint path, a :class:`Detector` or a
    ``(model, classes)`` pair; ``person_model`` may also be ``"same"``, ``"coco"`` or
    ``"none"``. Left as None it is ``"same"`` when the clothing model has masks and all
    ``mask_classes``. ``steps`` limits the work to ``["clothing"]`` or ``["person"]``; a
    JSON that already has the requested steps is skipped unless ``clobber``.
    ``storage_options`` go to fsspec (e.g. ``{"client_kwargs": {"endpoint_url": ...}}``).
    ``precision``: ``"tf32"`` (default: float32 tensors, TF32 convolutions and matmuls; within the
    contract's tolerance of the plain loop for 99% of the detections), ``"bf16"`` (autocast on
    CUDA; ~9% faster, boxes and masks move more), ``"fp16"`` (float16 autocast: TF32's mantissa,
    bf16's speed, a narrower range; 1.16-1.32x tf32 on folded-BN pairs, 1.03x with a GN model; with trained
    models 98.6-99.2% of boxes within the tolerance vs tf32's 99.1%) or ``"fp32"`` (no autocast, no TF32: the results
    of the plain per-frame torchvision loop, to rounding; see benchmarks/RESULTS.md). CPUs always
    run float32.
    """
    from tqdm.auto import tqdm

    if stride < 1:
        raise ParamsError(f"must be at least 1, got {stride}", key="stride")
    if max_frames is not None and max_frames < 1:
        raise ParamsError(f"must be at least 1, got {max_frames}", key="max_frames")
    if batch_size < 1:
        raise ParamsError(f"must be at least 1, got {batch_size}", key="batch_size")
    if precision not in PRECISIONS:
        raise ParamsError(f"must be one of {list(PRECISIONS)}, got {precision!r}", key="precision")
    if not 0.0 <= score_floor <= thresh <= 1.0:
        raise ParamsError(f"need 0 <= score_floor ({score_floor}) <= thresh ({thresh}) <= 1", key="score_floor")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(device)  # so library calls without a device argument use this card too
    sources = resolve_sources(input, id_in_filename=id_in_filename, url_rewrite=url_rewrite,
                              storage_options=storage_options)
    if rank is None or world_size is None:
        rank, world_size = world_from_env()
    mine = shard(sources, rank, world_size)
    if shuffle:  # spreads concurrent independent workers over a shared output folder
        random.Random(seed).shuffle(mine)
    plan = _build_plan(clothing_model, person_model, steps, list(mask_classes), device, score_floor)
    requested = {s for s, d in (("clothing", plan.clothing), ("person", plan.person)) if d is not None}
    opts = dict(score_floor=score_floor, thresh=thresh, mask_thresh=mask_thresh, stride=stride,
                max_frames=max_frames, rotate=str(rotate), batch_size=batch_size, create_vis=create_vis,
                output_video=output_video, storage_options=storage_options, precision=precision)
    summary = InferSummary(output_dir=output_dir)
    opts["stages"] = summary.stage_seconds
    precision_ctx = contextlib.ExitStack()  # closed in the `finally` below
    precision_ctx.enter_context(precision_flags(precision))
    precision_ctx.enter_context(gil_switch(device))
    precision_ctx.enter_context(frozen_gc(device))
    t0 = time.perf_counter()
    video_bar = tqdm(mine, desc=f"videos (rank {rank}/{world_size})" if world_size > 1 else "videos",
                     unit="video", disable=not progress, position=0)
    frame_bar = tqdm(total=None, unit="frame", disable=not progress, leave=False, position=1) if progress else None
    try:
        for src in video_bar:
            out_json = output_dir / f"{src.video_id}.json"
            existing = _load_existing(out_json) if out_json.exists() else None
            todo = set(requested)
            if existing is not None and not clobber:
                todo -= _steps_of(existing)
                if not todo:
                    summary.skipped.append(src.video_id)
                    continue
            sub = _Plan(plan.clothing if "clothing" in todo else None, plan.person if "person" in todo else None,
                        plan.mask_classes, plan.mask_label_ids)
            try:
                doc, n = _process_video(src, out_json, sub, existing, opts=opts, device=device, frame_bar=frame_bar)
                t_write = time.perf_counter()
                write_json(out_json, doc)  # last: a JSON on disk means the video is complete
                _add_stage(summary.stage_seconds, "write", t_write)
            except (YeayError, OSError) as e:
                summary.failed.append(record_failure(output_dir, src, e))
                continue
            except Exception as e:  # a decoder or model surprise on one video must not stop the batch
                e.args = (f"{e} | {traceback.format_exc(limit=3)}",)
                summary.failed.append(record_failure(output_dir, src, e))
                continue
            summary.done.append(src.video_id)
            summary.outputs.append(out_json)
            summary.frames += n
    finally:
        precision_ctx.close()
        if frame_bar is not None:
            frame_bar.close()
        video_bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary


# --------------------------------------------------------------------------- CLI
def infer_kwargs(infer_params: Any) -> dict:
    """:func:`run_inference` keyword arguments from a :class:`yeay_nb.params.InferParams`."""
    ip = infer_params
    keys = ("score_floor", "thresh", "mask_classes", "create_vis", "output_video", "clobber", "shuffle", "stride",
            "max_frames", "rotate", "id_in_filename", "url_rewrite", "batch_size", "device", "precision")
    kw = {k: getattr(ip, k) for k in keys}
    for k in ("mask_thresh", "steps"):
        if hasattr(ip, k):
            kw[k] = getattr(ip, k)
    kw["clothing_model"] = str(ip.clothing_model) if ip.clothing_model else None
    kw["person_model"] = ip.person_model
    return kw


def _cmd_infer(args: argparse.Namespace) -> int:
    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    summary = run_inference(
        args.input, args.output_dir, args.clothing_model, args.person_model, steps=steps,
        score_floor=args.score_floor, thresh=args.thresh, mask_thresh=args.mask_thresh,
        mask_classes=args.mask_classes, create_vis=args.create_vis, output_video=args.output_video,
        clobber=args.clobber, shuffle=args.shuffle, stride=args.stride, max_frames=args.max_frames,
        rotate=args.rotate, id_in_filename=args.id_in_filename, url_rewrite=args.url_rewrite or [],
        batch_size=args.batch_size, device=args.device, precision=args.precision, progress=not args.no_progress)
    print(f"[yeay-nb] infer: {summary}")
    for f in summary.failed:
        print(f"  failed {f['video_id']}: {f['reason'].splitlines()[0][:200]}")
    return 1 if summary.failed and not summary.done and not summary.skipped else 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``yeay-nb infer`` (called by :mod:`yeay_nb.cli`)."""
    p = subparsers.add_parser("infer", help="clothing items and person masks for every video -> one JSON each",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="video file, folder, JSON list of paths/URLs, or catalog feed")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--clothing-model", default=None, help="checkpoint (.pt) of the clothing detector")
    p.add_argument("--person-model", default=None,
                   help="checkpoint, 'same' (one pass of the clothing Mask R-CNN), 'coco' or 'none'; "
                        "default: 'same' when the clothing model has masks and the mask classes")
    p.add_argument("--steps", default=None, help="comma list of clothing,person (default: both where a model is given)")
    p.add_argument("--score-floor", type=float, default=0.05, help="items keep detections above this")
    p.add_argument("--thresh", type=float, default=0.4, help="pictures draw detections above this")
    p.add_argument("--mask-thresh", type=float, default=0.5, help="masks kept for detections above this")
    p.add_argument("--mask-classes", nargs="+", default=["person"])
    p.add_argument("--create-vis", action="store_true", help="best frames, crops, contact sheet, timeline")
    p.add_argument("--output-video", action="store_true", help="annotated mp4 per video")
    p.add_argument("--clobber", action="store_true", help="recompute videos whose JSON exists")
    p.add_argument("--shuffle", action="store_true", help="process videos in random order")
    p.add_argument("--stride", type=int, default=1, help="process every K-th frame")
    p.add_argument("--max-frames", type=int, default=None, help="decode at most the first N frames")
    p.add_argument("--rotate", default="auto", choices=["auto", "0", "90", "180", "270"],
                   help="clockwise rotation of decoded frames (auto: the file's rotation metadata)")
    p.add_argument("--id-in-filename", action="store_true", help="video_id = file name before the first '_'")
    p.add_argument("--url-rewrite", action="append", default=[], metavar="FROM=TO", help="repeatable")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=list(PRECISIONS),
                   help="tf32 (default): float32 with TF32 math, within the contract's tolerance; bf16: "
                        "autocast on CUDA (~9%% faster, less exact); fp32: the plain fp32 loop's results (no TF32)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_infer)
    return p


# --------------------------------------------------------------------------- reading results back
def output_table(output_dir: str | os.PathLike, thresh: float = 0.4) -> list[dict]:
    """One row per ``<video_id>.json`` in ``output_dir`` (plus failures), for notebook tables.

    Usage::

        import pandas as pd
        pd.DataFrame(output_table("work/infer"))
    """
    output_dir = Path(output_dir)
    rows = []
    for path in sorted(output_dir.glob("*.json")):
        doc = _load_existing(path)
        if doc is None or "video_id" not in doc:
            continue
        classes = doc.get("classesInDS", [])
        shown = [it for it in doc.get("items", []) if it[2] >= thresh]
        seen = sorted({classes[it[1]] for it in shown if it[1] < len(classes)})
        rows.append({"video_id": doc["video_id"], "frames": len(doc.get("frame_indices", [])),
                     "video_fcnt": doc.get("video_fcnt"), "dim": "x".join(map(str, doc.get("video_dim", []))),
                     "items": len(doc.get("items", [])), f"items>={thresh}": len(shown),
                     "masks": sum(len(m) for f in doc.get("coco_rle_masks", []) for m in f),
                     "classes": ", ".join(seen), "status": "done", "json": str(path)})
    fail = output_dir / "failures.jsonl"
    if fail.exists():
        done = {r["video_id"] for r in rows}
        for line in fail.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                rec = json.loads(line)
                if rec.get("video_id") not in done:
                    rows.append({"video_id": rec.get("video_id"), "status": "failed: " + str(rec.get("reason"))[:120]})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m yeay_nb.infer ...``, e.g. ``torchrun --nproc_per_node=4 -m yeay_nb.infer --input feed.json ...``:
    each process takes its share of the manifest on its own card."""
    import sys

    from .cli import run_module

    parser = argparse.ArgumentParser(prog="python -m yeay_nb.infer")
    add_cli(parser.add_subparsers(dest="command", required=True))
    return run_module(parser, ["infer", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
