"""The per-video output contract: its JSON Schema (draft 2020-12) and validation.

Usage::

    from yeay_nb.contract import validate_output, validate_file, SCHEMA_VERSION
    validate_file("work/infer/video1.json")       # raises ContractError naming file and field
    validate_output(doc, file="video1.json")      # the same for a dict in memory

The schema (``yeay_nb/schemas/video_output.schema.json``) keeps the 2018 field names and
shapes (see ``../shared/contract/README.md``) and adds ``schema_version``, ``models``,
``frame_indices`` and ``steps``. Besides the schema, :func:`validate_output` checks what a
schema cannot: per-frame lists have one entry per processed frame, class ids index
``classesInDS``, every RLE has the frame's size and each class's best box is one of that
frame's items.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .errors import YeayError

SCHEMA_PATH = Path(__file__).parent / "schemas" / "video_output.schema.json"
SCHEMA_VERSION = "2.0"


class ContractError(YeayError):
    """An output JSON does not follow the contract (names the file and the field)."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file, self.field = file, field
        where = ", ".join(x for x in (f"file {file}" if file else "", f"field '{field}'" if field else "") if x)
        super().__init__(f"{where}: {message}" if where else message)


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    """The shipped JSON Schema as a dict."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _path(err) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                   for i, p in enumerate(err.absolute_path)) or "<root>"


def validate_output(doc: Any, *, file: str | None = None, semantic: bool = True) -> None:
    """Raise :class:`ContractError` unless ``doc`` follows the schema (and, with
    ``semantic``, the cross-field rules in the module docstring)."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ContractError(f"{e.message}{more}", file=file, field=_path(e))
    if semantic:
        _check_semantics(doc, file)


def validate_file(path: str | Path, *, semantic: bool = True) -> dict:
    """Load ``path`` and validate it; return the document."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractError("file not found", file=str(path)) from None
    except json.JSONDecodeError as e:
        raise ContractError(f"not valid JSON: {e}", file=str(path)) from None
    validate_output(doc, file=str(path), semantic=semantic)
    return doc


def _check_semantics(doc: dict, file: str | None) -> None:
    def fail(msg: str, field: str) -> None:
        raise ContractError(msg, file=file, field=field)

    frames = doc["frame_indices"]
    if any(b <= a for a, b in zip(frames, frames[1:])):
        fail("must be strictly increasing", "frame_indices")
    if frames and frames[-1] >= doc["video_fcnt"]:
        fail(f"index {frames[-1]} is not below video_fcnt {doc['video_fcnt']}", "frame_indices")
    processed = set(frames)
    if len(doc["blur_scores"]) != len(frames):
        fail(f"{len(doc['blur_scores'])} entries for {len(frames)} processed frames", "blur_scores")
    n_classes = len(doc["classesInDS"])
    for i, (f, c, _s, box) in enumerate(doc["items"]):
        if f not in processed:
            fail(f"frame {f} is not among frame_indices", f"items[{i}][0]")
        if c >= n_classes:
            fail(f"class id {c} but classesInDS has {n_classes} names", f"items[{i}][1]")
        if box[2] < box[0] or box[3] < box[1]:
            fail(f"box {box} is not [x1, y1, x2, y2]", f"items[{i}][3]")
    for i, f in enumerate(doc["top_N_frames"]):
        if f not in processed:
            fail(f"frame {f} is not among frame_indices", f"top_N_frames[{i}]")
    best_frames, best_boxes = doc["top_frames_each_class"]
    if len(best_frames) != n_classes or len(best_boxes) != n_classes:
        fail(f"needs one entry per class ({n_classes})", "top_frames_each_class")
    by_frame: dict[int, list] = {}
    for f, c, _s, box in doc["items"]:
        by_frame.setdefault(f, []).append((c, box))
    for c, (f, box) in enumerate(zip(best_frames, best_boxes)):
        if (f == -1) != (box is None):
            fail("frame -1 goes with a null box and only then", f"top_frames_each_class[*][{c}]")
        if f != -1 and (c, box) not in by_frame.get(f, []):
            fail(f"class {c}'s best box is not among frame {f}'s items", f"top_frames_each_class[1][{c}]")
    w, h = doc["video_dim"]
    for key in ("coco_rle_masks", "mask_scores"):
        if key in doc and len(doc[key]) != len(frames):
            fail(f"{len(doc[key])} entries for {len(frames)} processed frames", key)
    for i, per_class in enumerate(doc.get("coco_rle_masks", [])):
        for j, masks in enumerate(per_class):
            for k, rle in enumerate(masks):
                if list(rle["size"]) != [h, w]:
                    fail(f"size {rle['size']} but the frame is [h, w] = [{h}, {w}]",
                         f"coco_rle_masks[{i}][{j}][{k}].size")
