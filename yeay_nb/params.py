"""Load and validate YAML params: one typed section per step.

Usage::

    from yeay_nb.params import load_params
    p = load_params("params/demo.yaml", overrides={"train.max_iter": 50})
    p.convert.source, p.train.base_lr, p.work_dir

Everything is checked before any work starts: an unknown key, a wrong type or a
missing input path raises :class:`~yeay_nb.errors.ParamsError` naming the key and
the file. Relative paths are resolved against the directory of the params file, so
a params file means the same thing from a notebook, the CLI or CI.

A section's fields are plain dataclass fields; the type hint is the validation rule.
``InputPath`` fields must exist when given; ``OutputPath`` fields are only resolved.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import ParamsError


class InputPath(type(Path())):  # type: ignore[misc]
    """A path that must exist when the params are loaded (raw inputs only)."""


class OutputPath(type(Path())):  # type: ignore[misc]
    """A path that is resolved but need not exist (outputs, or inputs made by an earlier step)."""


# --------------------------------------------------------------------------- sections
@dataclass
class RunParams:
    """Naming and reproducibility of a run."""

    name: str = "run"
    seed: int = 0


@dataclass
class SynthParams:
    """The synthetic Visual-Genome-format wardrobe (see :mod:`yeay_nb.synth`)."""

    num_images: int = 200
    image_size: list[int] = field(default_factory=lambda: [320, 256])  # width, height
    num_videos: int = 2
    video_frames: int = 48
    seed: int = 0


@dataclass
class VGParams:
    """Visual Genome files as published."""

    image_data: Optional[InputPath] = None
    objects: Optional[InputPath] = None
    images_dir: Optional[InputPath] = None
    aliases: Optional[InputPath] = None  # object_alias.txt


@dataclass
class CCPParams:
    """Clothing Co-Parsing: pixel-level label maps."""

    root: Optional[InputPath] = None
    mapping: Optional[InputPath] = None  # CCP label -> taxonomy class YAML (default shipped)
    min_component_area: int = 100  # connected components smaller than this are specks
    holdout_every: int = 5  # images whose number is divisible by this go to val
    workers: Optional[int] = None  # conversion processes (default: all cores)


@dataclass
class ConvertParams:
    """Notebook 01 / ``yeay-nb convert``: raw annotations to a COCO json."""

    source: Literal["synth", "vg", "ccp"] = "synth"
    synth: SynthParams = field(default_factory=SynthParams)
    vg: VGParams = field(default_factory=VGParams)
    ccp: CCPParams = field(default_factory=CCPParams)
    taxonomy: Optional[InputPath] = None  # default: the 2018 38-class taxonomy
    val_fraction: float = 0.2
    limit: Optional[int] = None  # keep at most this many images (quick looks)
    coco_json: Optional[OutputPath] = None  # default: <work_dir>/coco.json
    show_examples: int = 8


@dataclass
class TrainParams:
    """Notebook 03 / ``yeay-nb train``: the seed's Detectron knobs.

    ``base_lr``, ``max_iter``, ``steps``, ``warmup_iters`` and ``snapshot_iters`` are
    given for a total batch of ``reference_batch`` images; the trainer rescales them
    linearly for the actual total batch (``ims_per_gpu`` x number of processes).
    """

    model: Literal["fasterrcnn", "maskrcnn"] = "fasterrcnn"
    backbone: Literal["resnet50", "resnet18", "mobilenet_v3"] = "resnet50"
    weights: str = "none"  # coco | imagenet | none | <checkpoint path>
    coco_json: Optional[OutputPath] = None  # default: the convert step's output
    output_dir: Optional[OutputPath] = None  # default: <work_dir>/train
    base_lr: float = 0.02
    max_iter: int = 90000
    steps: list[int] = field(default_factory=lambda: [60000, 80000])
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3
    gamma: float = 0.1
    # step: x gamma at each of ``steps``; linear / cosine: from 1 down to 0 over the run (iterations or
    # time budget, whichever is further), the shape "Budgeted Training" (Li et al., ICLR 2020) found best
    # when the budget is short; ``steps`` and ``gamma`` are then unused
    lr_policy: Literal["step", "linear", "cosine"] = "step"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    ims_per_gpu: int = 2
    reference_batch: int = 16
    train_scales: list[int] = field(default_factory=lambda: [800])
    # one random train scale per batch instead of per image: same scales per image, but a batch is
    # no longer padded to its largest draw (with 6 scales ~1.4x fewer pixels; models.TrainTestTransform)
    scale_per_batch: bool = True
    max_size: int = 1333
    test_scale: int = 800
    test_max_size: int = 1333
    rois_per_image: int = 512
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    detections_per_image: int = 100
    norm: Literal["frozen_bn", "bn", "gn"] = "frozen_bn"
    # light: ~3x cheaper ROI heads (CPU demos); mlp: the standard normed heads but a 2-FC box head
    # (no convs on each ROI; only differs from standard where norm is bn or gn)
    heads: Literal["standard", "light", "mlp"] = "standard"
    # 3x3 convolutions in the RPN head; None: the layout's (2 with norm bn/gn, 1 otherwise). The GN
    # layout's second one is ~18% of a GN model's arithmetic a frame (benchmarks/bench_backbone.py)
    rpn_conv_depth: Optional[int] = None
    # anchor aspect ratios (height / width) at every FPN level; null: torchvision's [0.5, 1, 2]. Garments
    # such as belts, scarves and ties are longer than 2:1 (e.g. [0.25, 0.5, 1, 2, 4])
    anchor_ratios: Optional[list[float]] = None
    hflip: bool = True
    # repeat-factor sampling (LVIS): images with classes in fewer than this fraction of the training
    # images repeat sqrt(threshold / fraction) times per epoch; None: every image once
    repeat_factor_threshold: Optional[float] = None
    # Simple Copy-Paste (Ghiasi et al. 2021): the probability that a training image gets the masked
    # objects of another training image pasted on (scaled 0.3-1x, placed at random); 0: off
    copy_paste_prob: float = 0.0
    # classes never pasted, by name (on CCP at 430 s [person] alone made person masks worse; with
    # copy_paste_unoccluded [person] too it is the CCP recipe: benchmarks/RESULTS.md, 2026-11-27)
    copy_paste_exclude: list[str] = field(default_factory=list)
    # classes whose masks keep the pixels pasted objects cover (e.g. [person], with person excluded:
    # pasted garments are worn, not holes in the person's mask target)
    copy_paste_unoccluded: list[str] = field(default_factory=list)
    # the image whose objects are pasted is drawn by its repeat factor at this threshold (see
    # repeat_factor_threshold) instead of uniformly: images with rare classes give ~sqrt(threshold /
    # fraction) times as many pastes; null: uniform
    copy_paste_rare_threshold: Optional[float] = None
    # photometric augmentation: brightness, contrast and saturation each scaled by U(1 - c, 1 + c)
    # per training image (e.g. 0.3); 0: off
    color_jitter: float = 0.0
    # exponential moving average of the weights (e.g. 0.999; the decay ramps up as min(decay, (1 + n) /
    # (10 + n)) over the first updates); evaluation and inference use the average, checkpoints hold
    # both (key "ema"). null: off
    ema_decay: Optional[float] = None
    # logit adjustment of the box classifier's loss (Balanced Softmax): each class's training logit gets
    # tau * log(its training boxes / the most frequent class's), so rare classes score higher at test
    # time (fasttrain.logit_adjustment; needs batched_heads); 0: off, 1: the prior fully removed
    class_logit_adjust: float = 0.0
    # training targets (matching, sampling, losses) for the whole batch at once (yeay_nb.fasttrain);
    # false: torchvision's per-image code (same losses, ~10x more host synchronisations per step)
    batched_heads: bool = True
    # GroupNorm in bf16 under autocast (models.LowPrecisionGroupNorm; faster on a quiet GPU); false:
    # float32 GroupNorm as autocast does by default (its loss curve differs beyond the seed noise:
    # benchmarks/RESULTS.md). Training only: checkpoints hold the same weights either way
    low_precision_group_norm: bool = True
    # CUDA only: the backbone's forward and backward recorded as CUDA graphs for up to this many batch
    # shapes and replayed each step (yeay_nb.cudagraphs; the step is host-bound on fast GPUs); later
    # shapes run eagerly. One process only for now (not yet measured under DDP). 0: off
    cuda_graph_shapes: int = 0
    clip_grad_norm: Optional[float] = 10.0
    amp: Literal["auto", "bf16", "none"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    num_workers: int = 2
    snapshot_iters: int = 20000
    log_every: int = 20
    time_budget_s: Optional[float] = None  # stop (and checkpoint) after this many seconds
    # end this invocation after this many seconds of training (checkpoint, no evaluation): rerun the
    # same command to go on. The schedule still follows time_budget_s / max_iter, so a long run can
    # be made of several short jobs (preemptible instances, per-call time limits)
    stop_after_s: Optional[float] = None
    # [start, stop]: trace iterations start+1..stop with torch.profiler (main process) into
    # output_dir/profile_<start>-<stop>.json (Chrome/Perfetto trace) and a .txt table of the top ops
    profile_iters: Optional[list[int]] = None
    skip_test: bool = False
    # the final evaluation also runs the mirrored validation images and merges (evaluate.merge_flipped):
    # twice the test time; a test-time setting, so `yeay-nb evaluate --flip` scores a checkpoint either way
    test_flip: bool = False
    device: str = "auto"
    cpu_threads: Optional[int] = None  # torch threads when training on CPU (1 is fastest on a busy machine)


@dataclass
class InferParams:
    """Notebook 04 / ``yeay-nb infer``: video inference."""

    input: Optional[str] = None  # video file, folder, JSON manifest or feed, or URL
    output_dir: Optional[OutputPath] = None  # default: <work_dir>/infer
    clothing_model: Optional[OutputPath] = None  # default: <train.output_dir>/model_final.pt
    person_model: Optional[str] = None  # a checkpoint, "same", "coco" or None
    score_floor: float = 0.05
    thresh: float = 0.4
    mask_classes: list[str] = field(default_factory=lambda: ["person"])
    mask_thresh: float = 0.5  # person masks kept for detections scoring at least this
    steps: list[str] = field(default_factory=lambda: ["clothing", "person"])  # run only some to merge
    create_vis: bool = True
    output_video: bool = False
    clobber: bool = False
    shuffle: bool = False
    stride: int = 1
    max_frames: Optional[int] = None
    rotate: Literal["auto", "0", "90", "180", "270"] = "auto"
    id_in_filename: bool = False
    url_rewrite: list[str] = field(default_factory=list)  # FROM=TO
    batch_size: int = 8
    device: str = "auto"
    # tf32 (default): float32 tensors, TF32 math, within the contract's tolerance of the plain loop;
    # bf16: autocast on CUDA (~9% faster, boxes/masks move more); fp16: autocast in float16 (TF32's
    # mantissa; on an H100 within the tolerance, 1.19x tf32 on a folded-BN pair); fp32: no autocast and no TF32, the plain fp32 loop's results
    # (fastpath.DEFAULT_PRECISION says why)
    precision: Literal["bf16", "fp16", "tf32", "fp32"] = "tf32"


@dataclass
class ExploreParams:
    """Notebook 02: FiftyOne datasets and the App."""

    dataset_name: str = "yeay-demo"
    overwrite: bool = True
    database_dir: Optional[OutputPath] = None  # default: <work_dir>/fiftyone-db
    predictions_checkpoint: Optional[OutputPath] = None  # default: infer.clothing_model, if it exists
    split: str = "val"
    launch_app: bool = False
    app_port: int = 5151
    app_address: str = "localhost"
    max_samples: Optional[int] = None  # import at most this many images (quick looks)
    device: str = "auto"  # for predictions: auto = cuda when available
    score_floor: float = 0.05  # predictions below this score are not stored
    tiny_frac: float = 1e-4  # label problems: box area below this fraction of the image
    huge_frac: float = 0.9  # label problems: box area above this fraction of the image
    duplicate_iou: float = 0.9  # label problems: same-class boxes overlapping this much
    videos_dir: Optional[OutputPath] = None  # <video_id>.json files; default: infer.output_dir
    video_dataset_name: str = "yeay-videos"


@dataclass
class Params:
    """All steps' params; ``work_dir`` holds everything the pipeline writes by default."""

    run: RunParams = field(default_factory=RunParams)
    work_dir: OutputPath = OutputPath("work")
    convert: ConvertParams = field(default_factory=ConvertParams)
    explore: ExploreParams = field(default_factory=ExploreParams)
    train: TrainParams = field(default_factory=TrainParams)
    infer: InferParams = field(default_factory=InferParams)
    source_file: Optional[str] = None  # set by load_params; not a YAML key

    def to_dict(self) -> dict:
        """Plain YAML-able dict (paths as strings), e.g. to save next to a run."""
        def conv(x: Any) -> Any:
            if dataclasses.is_dataclass(x):
                return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x) if f.name != "source_file"}
            if isinstance(x, Path):
                return str(x)
            if isinstance(x, list):
                return [conv(v) for v in x]
            return x
        return conv(self)


_NOT_KEYS = {"source_file"}


# --------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Path):
        return "path"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, ctx: dict) -> Any:
    """Check ``value`` against the type hint ``tp``; return the converted value."""
    file = ctx["file"]
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, ctx)
            except ParamsError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ParamsError(f"expected {_type_name(tp)}, got {value!r}", file=file, key=key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in allowed:
            value = str(value)  # rotate: 90 written without quotes
        if value not in allowed:
            raise ParamsError(f"expected one of {list(allowed)}, got {value!r}", file=file, key=key)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"expected {_type_name(tp)}, got {value!r}", file=file, key=key)
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", ctx) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, ctx)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"expected true/false, got {value!r}", file=file, key=key)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"expected an integer, got {value!r}", file=file, key=key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"expected a number, got {value!r}", file=file, key=key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"expected a string, got {value!r}", file=file, key=key)
        return value
    if isinstance(tp, type) and issubclass(tp, Path):
        if not isinstance(value, (str, Path)) or not str(value):
            raise ParamsError(f"expected a path, got {value!r}", file=file, key=key)
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = ctx["base"] / p
        p = tp(p.resolve())
        if tp is InputPath and not p.exists():
            raise ParamsError(f"path does not exist: {p}", file=file, key=key)
        return p
    if tp is Any or tp is dict:
        return value
    raise TypeError(f"params: unsupported type {tp!r} for {key}")  # a bug in a section, not user input


def _build(cls: type, data: Any, prefix: str, ctx: dict) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"expected a mapping of keys, got {data!r}", file=ctx["file"], key=prefix or None)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS]  # declared order
    for k in data:
        if k not in names:
            full = f"{prefix}.{k}" if prefix else str(k)
            close = difflib.get_close_matches(str(k).replace("-", "_"), sorted(names), n=1, cutoff=0.75)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(names))}"
            raise ParamsError(f"unknown key{hint}", file=ctx["file"], key=full)
    kwargs = {}
    for name in names:
        if name in data:
            full = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(data[name], hints[name], full, ctx)
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value: Any, file: str) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ParamsError(f"cannot set '{dotted}': '{part}' is not a section", file=file, key=dotted)
        node = nxt
    node[parts[-1]] = value


def parse_override_value(text: str) -> Any:
    """A ``-p key value`` value as YAML ("100" -> 100, "true" -> True, "[1, 2]" -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def params_from_dict(data: dict, *, file: str = "<dict>", base: Path | None = None,
                     overrides: dict | None = None) -> Params:
    """Validate a params mapping (plus dotted-key overrides) into :class:`Params`."""
    data = dict(data or {})
    data.setdefault("work_dir", "work")
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for k, v in (overrides or {}).items():
        _set_dotted(data, k, v, file)
    ctx = {"file": file, "base": (base or Path.cwd()).resolve()}
    p = _build(Params, data, "", ctx)
    p.source_file = file
    _fill_defaults(p)
    _resolve_local_input(p, ctx["base"], file)
    _check(p, file)
    return p


def _resolve_local_input(p: Params, base: Path, file: str) -> None:
    """``infer.input`` may be a URL or a local path; a relative local path is read, like every
    other path here, against the params file's folder, and must exist."""
    src = p.infer.input
    if not src or "://" in src:
        return
    path = Path(src).expanduser()
    path = path if path.is_absolute() else (base / path).resolve()
    if not path.exists():
        raise ParamsError(f"path does not exist: {path}", file=file, key="infer.input")
    p.infer.input = str(path)


def load_params(path: str | Path, overrides: dict | None = None) -> Params:
    """Load, resolve and validate a params YAML file (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise ParamsError("params file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"not valid YAML: {e}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ParamsError("expected a mapping of sections at the top level", file=str(path))
    return params_from_dict(data, file=str(path), base=path.resolve().parent, overrides=overrides)


def _fill_defaults(p: Params) -> None:
    """Outputs default to places under work_dir, and each step reads the previous one's."""
    w = p.work_dir
    p.convert.coco_json = p.convert.coco_json or OutputPath(w / "coco.json")
    p.train.coco_json = p.train.coco_json or p.convert.coco_json
    p.train.output_dir = p.train.output_dir or OutputPath(w / "train")
    p.infer.output_dir = p.infer.output_dir or OutputPath(w / "infer")
    p.infer.clothing_model = p.infer.clothing_model or OutputPath(p.train.output_dir / "model_final.pt")
    p.explore.database_dir = p.explore.database_dir or OutputPath(w / "fiftyone-db")


def _check(p: Params, file: str) -> None:
    """Rules that span fields."""
    c = p.convert
    if c.source == "vg":
        for key in ("image_data", "objects"):
            if getattr(c.vg, key) is None:
                raise ParamsError("required when convert.source is 'vg'", file=file, key=f"convert.vg.{key}")
    if c.source == "ccp" and c.ccp.root is None:
        raise ParamsError("required when convert.source is 'ccp'", file=file, key="convert.ccp.root")
    if not 0.0 <= c.val_fraction < 1.0:
        raise ParamsError(f"must be in [0, 1), got {c.val_fraction}", file=file, key="convert.val_fraction")
    if len(c.synth.image_size) != 2 or min(c.synth.image_size) < 64:
        raise ParamsError("expected [width, height], each at least 64", file=file, key="convert.synth.image_size")
    t = p.train
    if sorted(t.steps) != t.steps or any(s <= 0 for s in t.steps):
        raise ParamsError(f"must be increasing positive iterations, got {t.steps}", file=file, key="train.steps")
    if not t.train_scales or min(t.train_scales) <= 0:
        raise ParamsError("needs at least one positive short-side size", file=file, key="train.train_scales")
    for key in ("max_iter", "ims_per_gpu", "reference_batch", "snapshot_iters"):
        if getattr(t, key) <= 0:
            raise ParamsError("must be positive", file=file, key=f"train.{key}")
    if t.rpn_conv_depth is not None and t.rpn_conv_depth < 1:
        raise ParamsError(f"must be at least 1 (or null for the layout's own), got {t.rpn_conv_depth}", file=file,
                          key="train.rpn_conv_depth")
    if not 0.0 <= t.copy_paste_prob <= 1.0:
        raise ParamsError(f"must be a probability in [0, 1], got {t.copy_paste_prob}", file=file,
                          key="train.copy_paste_prob")
    for key in ("repeat_factor_threshold", "copy_paste_rare_threshold"):
        v = getattr(t, key)
        if v is not None and not 0 < v <= 1:
            raise ParamsError(f"must be in (0, 1], got {v}", file=file, key=f"train.{key}")
    if not 0.0 <= t.color_jitter < 1.0:
        raise ParamsError(f"must be in [0, 1), got {t.color_jitter}", file=file, key="train.color_jitter")
    if not 0.0 <= t.class_logit_adjust <= 4.0:
        raise ParamsError(f"must be in [0, 4], got {t.class_logit_adjust}", file=file, key="train.class_logit_adjust")
    if t.class_logit_adjust and not t.batched_heads:
        raise ParamsError("needs train.batched_heads: true (the adjusted loss lives in the batched ROI heads)",
                          file=file, key="train.class_logit_adjust")
    if t.cuda_graph_shapes < 0:
        raise ParamsError(f"must be >= 0 (0: off), got {t.cuda_graph_shapes}", file=file, key="train.cuda_graph_shapes")
    if t.cuda_graph_shapes and not t.batched_heads:
        raise ParamsError("needs train.batched_heads: true (the batched model dispatches its backbone to the graphs)",
                          file=file, key="train.cuda_graph_shapes")
    if t.ema_decay is not None and not 0 < t.ema_decay < 1:
        raise ParamsError(f"must be in (0, 1) (or null: off), got {t.ema_decay}", file=file, key="train.ema_decay")
    if t.anchor_ratios is not None and (not t.anchor_ratios or min(t.anchor_ratios) <= 0):
        raise ParamsError(f"must be positive height/width ratios (or null), got {t.anchor_ratios}", file=file,
                          key="train.anchor_ratios")
    if t.profile_iters is not None and not (len(t.profile_iters) == 2 and 0 <= t.profile_iters[0] < t.profile_iters[1]):
        raise ParamsError(f"expected [start, stop] iterations with 0 <= start < stop, got {t.profile_iters}",
                          file=file, key="train.profile_iters")
    i = p.infer
    if i.stride < 1:
        raise ParamsError("must be at least 1", file=file, key="infer.stride")
    for j, rule in enumerate(i.url_rewrite):
        if "=" not in rule:
            raise ParamsError(f"expected FROM=TO, got {rule!r}", file=file, key=f"infer.url_rewrite[{j}]")
