"""Visual Genome (objects.json / attributes.json + image_data.json) to one COCO instances json.

Usage::

    from yeay_nb.convert.vg import convert_vg
    summary = convert_vg("vg/image_data.json", "vg/objects.json", "work/coco.json",
                         images_dir="vg/images", aliases="vg/object_alias.txt")
    summary["class_counts"]["footwear"]      # {'train': ..., 'val': ..., 'images': ...}
    summary["unmapped_names"][:10]           # frequent names no class took: refine the taxonomy

    # command line (registered by yeay_nb.cli through add_cli):
    #   yeay-nb convert vg --image-data image_data.json --objects objects.json --out coco.json

Visual Genome's objects.json is ~540 MB (108,077 images, ~3.8 M objects). ``json.load``
of it holds ~3.4 GB of Python objects; here the file is streamed instead:
:func:`iter_record_batches` cuts it into ~8 MB runs of whole records and hands each to
orjson, so only one chunk's records live at a time. Where a chunk ends is guessed from the
bytes that open every record (``{"image_id"``) and proven by the parse itself, with an
exact vectorised bracket/quote scan (numpy; strings and escapes honoured) as the fallback.
On big files two processes parse and map alternate chunks (results merged in file order:
the output does not depend on the number of workers). The cyclic GC is paused (it tripled
the parse time), and the (names, synsets) -> class mapping is cached per distinct pair:
VG repeats a few thousand names millions of times. See ``benchmarks/bench_vg_convert.py``
and ``benchmarks/RESULTS.md`` for the measurements behind these choices.

Accepted variants: v1.2/v1.4 (``image_id``, ``object_id``, ``names``), attributes.json
(extra ``attributes``, ignored), v1.0 (``id``, ``object_names`` or ``name``).
"""
from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import orjson

from ..errors import AnnotationError, ParamsError, YeayError
from ..taxonomy import Taxonomy, load_taxonomy, normalize_name
from .coco import PERSON, format_table, split_for_image, write_coco
from ..atomic import write_json

CHUNK_BYTES = 8 << 20  # 8 MB: per-call overhead is nil (4 and 16 MB measured the same CPU), ~70 MB of records

_WS = b" \t\r\n"
_LEADING_COMMA = re.compile(rb"[ \t\r\n]*,")


# --------------------------------------------------------------------------- streaming reader
class RecordBatch(NamedTuple):
    """Consecutive top-level records of a JSON list file."""

    records: list  # parsed records (orjson objects)
    first_index: int  # index of records[0] in the whole file
    body: bytes  # their bytes, "{...}, {...}" (kept for error messages)
    body_offset: int  # file byte offset of body[0]
    end_offset: int  # file byte offset just after the batch (progress)

    def record_offset(self, index: int) -> int | None:
        """File byte offset of record ``index`` (a whole-file index), for error messages."""
        pos, dd, depth = _structure(self.body, 0)
        starts = pos[(depth == 1) & (dd == 1)]
        k = index - self.first_index
        return int(starts[k]) + self.body_offset if 0 <= k < len(starts) else None


# Brackets -> +1/-1, a quote -> 2, everything else 0; bytes.translate runs at memory speed.
_CLASSIFY = bytearray(256)
_CLASSIFY[ord("{")] = _CLASSIFY[ord("[")] = 1
_CLASSIFY[ord("}")] = _CLASSIFY[ord("]")] = 255  # -1 as int8
_CLASSIFY[ord('"')] = 2
_CLASSIFY = bytes(_CLASSIFY)


def _structure(buf: bytes, depth0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of brackets outside strings, their +1/-1 and the depth after each.

    ``buf`` must start outside a string (we only ever cut at record boundaries).
    A quote is a string delimiter unless an odd run of backslashes precedes it.
    """
    kind = np.frombuffer(buf.translate(_CLASSIFY), np.int8)
    pos = np.flatnonzero(kind)
    k = kind[pos]
    is_quote = k == 2
    if buf.find(b"\\") >= 0:  # rare: drop escaped quotes (odd run of backslashes before them)
        a = np.frombuffer(buf, np.uint8)
        qj = np.flatnonzero(is_quote)
        qp = pos[qj]
        maybe = qj[(qp > 0) & (a[qp - 1] == 92)]  # only quotes right after a backslash
        for j in maybe.tolist():
            p = int(pos[j])
            run = 0
            while p - run - 1 >= 0 and buf[p - run - 1] == 92:
                run += 1
            if run % 2:
                is_quote[j] = False
                k[j] = 0
    # a bracket is outside any string when an even number of quotes precedes it
    outside = (np.cumsum(is_quote, dtype=np.int32) & 1) == 0
    keep = outside & (k != 2) & (k != 0)
    pos = pos[keep]
    dd = k[keep].astype(np.int32)
    depth = np.cumsum(dd, dtype=np.int32)
    depth += depth0
    return pos, dd, depth


def _loads(doc: bytes):
    """orjson.loads with the cyclic GC paused: a chunk allocates ~10^6 containers and the
    GC passes they trigger cost ~2/3 of the parse time (measured); records hold no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(doc)
    finally:
        if enabled:
            gc.enable()


def _parse_batch(body: bytes, body_offset: int, file: str, first_index: int) -> list:
    """orjson on ``[`` + records + ``]``; errors name the record and the file byte offset."""
    try:
        return _loads(b"[" + body + b"]")
    except orjson.JSONDecodeError as e:
        pos = max(int(getattr(e, "pos", 1)) - 1, 0)
        # orjson counts characters, not bytes: convert (only matters for non-ASCII input)
        pos = len(body.decode("utf-8", errors="replace")[:pos].encode("utf-8", errors="replace"))
        pos = min(pos, len(body))
        p, dd, depth = _structure(body, 0)
        starts = p[(depth == 1) & (dd == 1)]
        record = first_index + max(int(np.searchsorted(starts, pos, side="right")) - 1, 0)
        msg = str(e).split(": line")[0]
        raise AnnotationError(f"not valid JSON ({msg})", file=file, record=record,
                              offset=body_offset + pos) from None


def _strip_comma(body: bytes) -> tuple[bytes, int]:
    """Drop the ',' (and blanks) that separates this batch from the previous record."""
    m = _LEADING_COMMA.match(body)
    return (body[m.end():], m.end()) if m else (body, 0)


_SIGNATURE = re.compile(rb'\{[ \t\r\n]*"[^"\\]{1,64}"')


def iter_record_batches(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> Iterator[RecordBatch]:
    """Stream the top-level records of a (huge) JSON list file in batches.

    Usage::

        for batch in iter_record_batches("objects.json"):
            for i, rec in enumerate(batch.records, batch.first_index): ...

    Memory stays at about one chunk's records whatever the file size. Raises
    :class:`AnnotationError` (file, record index, byte offset) for a missing file, a
    top level that is not a list, malformed or truncated JSON.

    How a chunk is cut: fast path, the last occurrence of the bytes that opened the
    first record (e.g. ``{"image_id"``) preceded by ``}`` and ``,`` is a candidate record
    boundary, and orjson parsing ``[`` + records + ``]`` proves it (a false candidate
    inside a nested object or a string leaves brackets or a string unclosed, which can
    never parse). Otherwise, and for the first chunk, the exact path: a vectorised scan
    of brackets outside strings (:func:`_structure`).
    """
    file = str(path)
    if not os.path.isfile(file):
        raise AnnotationError("file not found", file=file)
    with open(file, "rb") as f:
        buf = f.read(chunk_bytes)
        base = 0  # file offset of buf[0]
        if buf.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
            buf, base = buf[3:], 3
        lead = len(buf) - len(buf.lstrip(_WS))
        if lead == len(buf):
            raise AnnotationError("file is empty (expected a JSON list of records)", file=file)
        if buf[lead:lead + 1] != b"[":
            kind = {b"{": "an object"}.get(buf[lead:lead + 1], "not a list")
            raise AnnotationError(f"top level is {kind}; expected a JSON list of records", file=file,
                                  offset=base + lead)
        depth0 = 0
        index = 0
        first = True
        signature = None
        misses = 0
        while True:
            # ---- fast path
            if signature is not None:
                p = buf.rfind(signature)
                j = p - 1
                while j > 0 and buf[j] in _WS:
                    j -= 1
                if j > 0 and buf[j] == 44:  # ','
                    j -= 1
                    while j > 0 and buf[j] in _WS:
                        j -= 1
                    if buf[j] == 125:  # '}'
                        body, skip = _strip_comma(buf[:j + 1])
                        try:
                            records = _loads(b"[" + body + b"]")
                        except orjson.JSONDecodeError:
                            records = None
                        if records is not None:
                            misses = 0
                            n = len(records)
                            yield RecordBatch(records, index, body, base + skip, base + j + 1)
                            records = body = None  # free this batch before parsing the next one
                            index += n
                            base += j + 1
                            more = f.read(chunk_bytes)
                            buf = buf[j + 1:] + more
                            continue
                        misses += 1
                        if misses >= 3:  # e.g. v1.0 where objects open like records: stop guessing
                            signature = None
            # ---- exact path
            pos, dd, depth = _structure(buf, depth0)
            bad = np.flatnonzero(depth < 0)
            if bad.size:
                raise AnnotationError("unbalanced closing bracket", file=file, offset=base + int(pos[bad[0]]))
            closed = np.flatnonzero(depth == 0)
            close_at = int(pos[closed[0]]) if closed.size else -1
            if close_at >= 0:
                keep = pos < close_at
                pos, dd, depth = pos[keep], dd[keep], depth[keep]
            ends = pos[(depth == 1) & (dd == -1)]
            if close_at >= 0:
                cut = close_at
            elif ends.size:
                cut = int(ends[-1]) + 1
            else:
                more = f.read(chunk_bytes)
                if not more:
                    raise AnnotationError("unexpected end of file (truncated?)", file=file,
                                          record=index, offset=base + len(buf))
                buf += more  # a record longer than a chunk: grow and rescan
                continue
            start = (int(pos[0]) + 1) if first else 0  # skip the opening '['
            body = buf[start:cut]
            if not first:
                body, skip = _strip_comma(body)
                if not skip and body.strip(_WS):
                    raise AnnotationError("expected ',' between records", file=file, record=index,
                                          offset=base + start + len(body) - len(body.lstrip(_WS)))
                start += skip
            if body.strip(_WS):
                records = _parse_batch(body, base + start, file, index)
                n = len(records)
                if first and n:
                    m = _SIGNATURE.match(body, len(body) - len(body.lstrip(_WS)))
                    signature = m.group(0) if m else None
                yield RecordBatch(records, index, body, base + start, base + cut)
                records = body = None
                index += n
            elif not first and close_at >= 0 and buf[:cut].strip(_WS):
                raise AnnotationError("trailing comma before the closing ']'", file=file, offset=base + cut)
            if close_at >= 0:
                tail = buf[close_at + 1:]
                while not tail.strip(_WS):
                    more = f.read(chunk_bytes)
                    if not more:
                        return
                    tail = more
                raise AnnotationError("unexpected data after the closing ']'", file=file,
                                      offset=base + close_at + 1)
            base += cut
            more = f.read(chunk_bytes)
            buf = buf[cut:] + more
            if not more and not buf.strip(_WS):
                raise AnnotationError("unexpected end of file: the list is not closed with ']'",
                                      file=file, record=index, offset=base + len(buf))
            depth0, first = 1, False


def _load_json(path: str | os.PathLike, what: str):
    path = str(path)
    if not os.path.isfile(path):
        raise AnnotationError(f"{what} not found", file=path)
    try:
        with open(path, "rb") as f:
            return orjson.loads(f.read())
    except orjson.JSONDecodeError as e:
        raise AnnotationError(f"not valid JSON ({str(e).split(': line')[0]})", file=path,
                              offset=getattr(e, "pos", None)) from None


# --------------------------------------------------------------------------- inputs
def _image_id(rec: dict):
    """VG v1.2+ says ``image_id``, v1.0 ``id``; ids that are numeric strings become ints."""
    iid = rec.get("image_id")
    if iid is None:
        iid = rec.get("id")
    if isinstance(iid, str) and iid.isdigit():
        iid = int(iid)
    return iid


def load_image_data(path: str | os.PathLike) -> list[dict]:
    """image_data.json as a list of COCO image entries (without ``split``), in file order."""
    data = _load_json(path, "image_data.json")
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        data = data["images"]
    if not isinstance(data, list):
        raise AnnotationError(f"top level is {type(data).__name__}; expected a JSON list of images", file=str(path))
    images = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise AnnotationError(f"expected an object, got {type(rec).__name__}", file=str(path), record=i)
        iid = _image_id(rec)
        if iid is None:
            raise AnnotationError("lacks an image id ('image_id' or 'id')", file=str(path), record=i)
        w, h = rec.get("width"), rec.get("height")
        if not isinstance(w, (int, float)) or not isinstance(h, (int, float)) or w <= 0 or h <= 0:
            raise AnnotationError(f"image {iid}: needs positive 'width' and 'height', got {w!r} x {h!r}",
                                  file=str(path), record=i)
        url = rec.get("url") or rec.get("image_url") or ""
        name = url.rstrip("/").rsplit("/", 1)[-1] if url else f"{iid}.jpg"
        images.append({"id": iid, "file_name": name, "width": w, "height": h, "vg_id": iid,
                       "coco_id": rec.get("coco_id"), "flickr_id": rec.get("flickr_id")})
    return images


def load_aliases(path: str | os.PathLike) -> dict[str, str]:
    """VG ``object_alias.txt``: each line ``canonical,alias,alias``; returns alias -> canonical."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError("aliases file not found", file=str(path))
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = [normalize_name(p) for p in line.split(",")]
        parts = [p for p in parts if p]
        for alias in parts[1:]:
            out[alias] = parts[0]
    return out


def _images_on_disk(images_dir: Path) -> dict[str, str]:
    """Basename -> path relative to ``images_dir`` (VG ships VG_100K/ and VG_100K_2/ subfolders)."""
    if not images_dir.is_dir():
        raise AnnotationError("images_dir is not a folder", file=str(images_dir))
    found: dict[str, str] = {}
    with os.scandir(images_dir) as it:
        subdirs = []
        for e in it:
            if e.is_dir():
                subdirs.append(e.name)
            else:
                found.setdefault(e.name, e.name)
    for sub in sorted(subdirs):
        with os.scandir(images_dir / sub) as it:
            for e in it:
                if not e.is_dir():
                    found.setdefault(e.name, f"{sub}/{e.name}")
    return found


def _load_person_masks(path: str | os.PathLike) -> dict:
    data = _load_json(path, "person masks json")
    if not isinstance(data, dict):
        raise AnnotationError("expected an object {image_id: [RLE, ...]}", file=str(path))
    out = {}
    for key, rles in data.items():
        iid = int(key) if str(key).isdigit() else key
        if not isinstance(rles, list) or not all(
                isinstance(r, dict) and isinstance(r.get("size"), list) and len(r["size"]) == 2
                and isinstance(r.get("counts"), (str, list)) for r in rles):
            raise AnnotationError("expected a list of COCO RLEs {'size': [h, w], 'counts': ...}",
                                  file=str(path), record=key)
        out[iid] = rles
    return out


# --------------------------------------------------------------------------- mapping
class _ClassCache:
    """(names, synsets) -> class index or None, computed once per distinct pair."""

    def __init__(self, tax: Taxonomy, aliases: dict[str, str] | None):
        self.tax, self.aliases = tax, aliases or {}
        self.table: dict = {}

    def miss(self, key: tuple, names, synsets):
        names = [n for n in names if isinstance(n, str)]
        if self.aliases:
            names = [self.aliases.get(normalize_name(n), n) for n in names]
        cls = self.tax.class_for(names, [s for s in synsets or () if isinstance(s, str)])
        self.table[key] = cls
        return cls


def _as_list(value) -> list:
    """A lone string as a one-item list, None as []; anything else unhashable fails later."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value) if isinstance(value, tuple) else value


def _legacy_names(o: dict) -> list:
    """v1.0 objects: ``object_names`` (list) or ``name`` (one string)."""
    names = o.get("object_names")
    if names is None:
        names = o.get("name")
    if names is None:
        return []
    return [names] if isinstance(names, str) else names


# --------------------------------------------------------------------------- record loop
class _State:
    """What the record loop reads (same in every worker process)."""

    def __init__(self, tax: Taxonomy, aliases, info_of: dict, all_ids: set, num_classes: int):
        self.cache = _ClassCache(tax, aliases)
        self.info_of, self.all_ids, self.num_classes = info_of, all_ids, num_classes


class _Result:
    """What the record loop produces; results of consecutive chunks merge in file order."""

    def __init__(self, num_classes: int):
        self.annotations: list[tuple] = []  # (image_id, x, y, w, h, category_id, vg_object_id)
        self.per_class = [[0, 0, 0] for _ in range(num_classes)]  # train, val, images
        self.dropped: Counter = Counter()
        self.skipped: Counter = Counter()
        self.unmapped: Counter = Counter()  # (names..., None, synsets...) -> count
        self.n_records = self.n_objects = 0
        self.stopped_early = False

    def merge(self, other: "_Result") -> None:
        self.annotations += other.annotations
        for mine, theirs in zip(self.per_class, other.per_class):
            for j in range(3):
                mine[j] += theirs[j]
        self.dropped.update(other.dropped)
        self.skipped.update(other.skipped)
        self.unmapped.update(other.unmapped)
        self.n_records += other.n_records
        self.n_objects += other.n_objects


def _process_records(records: list, first_index: int, state: _State, res: _Result, file: str,
                     batch: RecordBatch | None = None, remaining: set | None = None) -> bool:
    """The hot loop: map, clip, dedupe one batch of records into ``res``. True: stop (limit)."""
    table, miss = state.cache.table, state.cache.miss
    info_of, per_class = state.info_of, res.per_class
    dropped, add = res.dropped, res.annotations.append
    unmapped_keys: list = []
    append_unmapped = unmapped_keys.append
    stop = False
    for i, rec in enumerate(records, first_index):
        if not isinstance(rec, dict):
            raise AnnotationError(f"expected an object per image, got {type(rec).__name__}", file=file, record=i)
        iid = _image_id(rec)
        objs = rec.get("objects")
        if iid is None or not isinstance(objs, list):
            what = "lacks an image id ('image_id' or 'id')" if iid is None else "'objects' must be a list"
            raise AnnotationError(what, file=file, record=i, offset=batch.record_offset(i) if batch else None)
        res.n_records += 1
        res.n_objects += len(objs)
        img = info_of.get(iid)
        if img is None:
            reason = "image_dropped" if iid in state.all_ids else "unknown_image"
            res.skipped[reason] += 1
            dropped[reason] += len(objs)
            continue
        W, H, split = img
        seen: set = set()
        try:
            for o in objs:
                names = o.get("names")
                if names.__class__ is not list:
                    names = _legacy_names(o) if names is None else _as_list(names)
                synsets = o.get("synsets")
                if synsets.__class__ is not list:
                    synsets = _as_list(synsets)
                # the usual one name + one synset as a pair, else one flat tuple (measured 1.5x
                # faster than a pair of tuples); key[0] is the first name either way
                if len(names) == 1 and len(synsets) == 1:
                    key = (names[0], synsets[0])
                else:
                    key = (*names, None, *synsets)
                cls = table.get(key, -1)
                if cls == -1:
                    cls = miss(key, names, synsets)
                if cls is None:
                    append_unmapped(key)
                    continue
                x, y, w, h = o.get("x"), o.get("y"), o.get("w"), o.get("h")
                if x is None or y is None or w is None or h is None:
                    dropped["missing_box"] += 1
                    continue
                if w <= 0 or h <= 0:
                    dropped["negative_size" if (w < 0 or h < 0) else "zero_size"] += 1
                    continue
                x1, y1 = x + w, y + h
                x0 = x if x > 0 else 0
                y0 = y if y > 0 else 0
                if x1 > W:
                    x1 = W
                if y1 > H:
                    y1 = H
                cw, ch = x1 - x0, y1 - y0
                if cw <= 0 or ch <= 0:
                    dropped["outside_image"] += 1
                    continue
                k = (cls, round(x0), round(y0), round(x1), round(y1))
                if k in seen:
                    dropped["duplicate"] += 1
                    continue
                seen.add(k)
                oid = o.get("object_id")
                add((iid, x0, y0, cw, ch, cls, oid if oid is not None else o.get("id")))
                per_class[cls][split] += 1
        except (AttributeError, TypeError) as e:
            raise AnnotationError(f"image {iid}: malformed object ({e})", file=file, record=i,
                                  offset=batch.record_offset(i) if batch else None) from None
        for c in {k[0] for k in seen}:
            per_class[c][2] += 1
        if remaining is not None:
            remaining.discard(iid)
            if not remaining:
                stop = True
                break
    res.unmapped.update(unmapped_keys)  # Counter.update on a list runs in C
    return stop


# --------------------------------------------------------------------------- parallel
# Exactness of the parallel split: the main process only guesses chunk boundaries (the
# record-opening bytes after "}," near every 16 MB); each worker proves its chunk by
# parsing "[" + chunk + "]". Chunk 0 starts right after the file's "[", and a chunk that
# parses ends on a true record boundary when it starts on one, so by induction all
# guesses are right when all chunks parse. Any failure -> the caller redoes it serially.
_WORKER: dict = {}


def _worker_init(file: str, state: _State) -> None:
    gc.disable()  # see _gc_paused
    _WORKER["file"], _WORKER["state"] = file, state


def _worker_chunk(span: tuple[int, int, bool]):
    start, end, need_comma = span
    with open(_WORKER["file"], "rb") as f:
        f.seek(start)
        body = f.read(end - start)
    body, skip = _strip_comma(body)
    if (need_comma and not skip) or not body.strip(_WS):
        return None
    state = _WORKER["state"]
    try:
        records = orjson.loads(b"[" + body + b"]")
        res = _Result(state.num_classes)
        _process_records(records, 0, state, res, _WORKER["file"])
    except (orjson.JSONDecodeError, YeayError):
        return None
    del records
    return res, end - start


def _chunk_spans(file: str, chunk_bytes: int) -> list[tuple[int, int, bool]] | None:
    """Guessed (start, end, starts_with_comma) byte spans covering the file's records."""
    size = os.path.getsize(file)
    with open(file, "rb") as f:
        head = f.read(1 << 20)
        lead = len(head) - len(head.lstrip(_WS + b"\xef\xbb\xbf"))
        if head[lead:lead + 1] != b"[":
            return None
        m = _SIGNATURE.search(head, lead + 1)
        if m is None or head[lead + 1:m.start()].strip(_WS):
            return None
        sig = m.group(0)
        f.seek(max(size - 4096, 0))
        tail = f.read().rstrip(_WS)
        if not tail.endswith(b"]"):
            return None
        close_at = max(size - 4096, 0) + len(tail) - 1
        spans, start = [], lead + 1
        nominal = start + chunk_bytes
        while nominal < close_at - chunk_bytes // 4:
            f.seek(nominal)
            window = f.read(1 << 20)
            p = window.find(sig)
            boundary = -1
            while p >= 0:
                j = p - 1
                while j > 0 and window[j] in _WS:
                    j -= 1
                if j > 0 and window[j] == 44:
                    j -= 1
                    while j > 0 and window[j] in _WS:
                        j -= 1
                    if window[j] == 125:
                        boundary = nominal + j + 1
                        break
                p = window.find(sig, p + 1)
            if boundary < 0:  # a record longer than the window: just try further on
                nominal += chunk_bytes
                continue
            spans.append((start, boundary, bool(spans)))
            start = boundary
            nominal = boundary + chunk_bytes
        spans.append((start, close_at, bool(spans)))
    return spans


def _convert_parallel(file: str, state: _State, res: _Result, workers: int, bar) -> bool:
    """Parse and convert chunks in ``workers`` processes, merged in file order; False: redo serially."""
    import multiprocessing as mp

    spans = _chunk_spans(file, CHUNK_BYTES)
    if not spans:
        return False
    # fork: the workers inherit the state without pickling and nothing re-imports the caller's
    # __main__ (spawn would re-run a user's script that lacks an `if __name__ == "__main__"`
    # guard). The children only run orjson and _process_records, no locks shared with threads.
    if "fork" not in mp.get_all_start_methods():
        return False
    ctx = mp.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "fork() with threads" (see above)
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(file, state))
    with pool:
        for out in pool.imap(_worker_chunk, spans):
            if out is None:
                pool.terminate()
                return False
            part, nbytes = out
            res.merge(part)
            if bar is not None:
                bar.update(nbytes)
    return True


# --------------------------------------------------------------------------- convert
def convert_vg(image_data, objects, out, *, images_dir=None, taxonomy=None, val_fraction: float = 0.2,
               aliases=None, limit: int | None = None, person_masks=None, seed: int = 0,
               progress: bool = True, workers: int | None = None) -> dict:
    """Convert Visual Genome files to a COCO instances json at ``out``; return the summary.

    ``taxonomy`` is a :class:`~yeay_nb.taxonomy.Taxonomy`, a YAML path or None (38 classes).
    Same category + same rounded clipped box in one image = one annotation; degenerate,
    box-less and unknown-image objects are dropped and counted by reason. With
    ``images_dir`` images missing on disk are dropped. ``limit`` keeps the first N images
    of image_data.json (and stops reading objects once all of them were seen).
    ``person_masks``: JSON {image_id: [COCO RLE, ...]} -> a ``person`` class after the
    taxonomy's. The summary is also written atomically to ``<out stem>.summary.json``.
    ``workers``: processes that parse objects.json (None: 2 for files over 64 MB, else 1);
    the output is identical whatever the number.
    """
    with _gc_paused():
        return _convert_vg(image_data, objects, out, images_dir=images_dir, taxonomy=taxonomy,
                           val_fraction=val_fraction, aliases=aliases, limit=limit,
                           person_masks=person_masks, seed=seed, progress=progress,
                           workers=workers)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic GC: converting VG allocates ~10^7 containers while ~10^6 stay alive,
    and the full collections that triggers made the run 6x slower (80 s vs 13 s, measured).
    Records and annotations hold no reference cycles, so reference counting frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _convert_vg(image_data, objects, out, *, images_dir, taxonomy, val_fraction, aliases, limit,
                person_masks, seed, progress, workers) -> dict:
    t0 = time.perf_counter()
    out = Path(out)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    if not 0.0 <= val_fraction < 1.0:
        raise ParamsError(f"must be in [0, 1), got {val_fraction}", key="val_fraction")
    if limit is not None and limit < 0:
        raise ParamsError(f"must be >= 0, got {limit}", key="limit")
    if not os.path.isfile(str(objects)):
        raise AnnotationError("objects json not found", file=str(objects))
    alias_map = load_aliases(aliases) if aliases else None
    masks = _load_person_masks(person_masks) if person_masks else None
    images_all = load_image_data(image_data)
    # every id image_data knows: tells "image dropped (disk/limit)" apart from "unknown image id"
    all_ids = {im["id"] for im in images_all}

    dropped_images: Counter = Counter()
    if images_dir is not None:
        on_disk = _images_on_disk(Path(images_dir))
        kept = []
        for im in images_all:
            rel = on_disk.get(im["file_name"])
            if rel is None:
                dropped_images["missing_on_disk"] += 1
            else:
                im["file_name"] = rel
                kept.append(im)
        images_all = kept
    if limit is not None and len(images_all) > limit:
        dropped_images["beyond_limit"] = len(images_all) - limit
        images_all = images_all[:limit]
    # image id -> (width, height, split index); duplicated ids in image_data: the first wins
    info_of: dict = {}
    images = []
    for im in images_all:
        if im["id"] in info_of:
            dropped_images["duplicate_id"] += 1
            continue
        im["split"] = split_for_image(im["id"], val_fraction, seed)
        info_of[im["id"]] = (im["width"], im["height"], 1 if im["split"] == "val" else 0)
        images.append(im)
    classes = list(tax.classes)
    person_cls = None
    if masks is not None:
        if PERSON in classes:
            person_cls = classes.index(PERSON)
        else:
            classes.append(PERSON)
            person_cls = len(classes) - 1
    state = _State(tax, alias_map, info_of, all_ids, len(classes))
    res = _Result(len(classes))
    objects_file = str(objects)
    size = os.path.getsize(objects_file)
    if workers is None:
        # processes pay off only on big files; a limit stops reading early, which needs serial order
        workers = min(2, os.cpu_count() or 1) if size >= 64 << 20 and limit is None else 1
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=size, unit="B", unit_scale=True, desc="VG objects", file=sys.stderr)
    t_read = time.perf_counter()
    done = False
    if workers > 1 and limit is None:
        done = _convert_parallel(objects_file, state, res, workers, bar)
        if not done:  # a chunk did not parse: redo serially, which names the exact record and offset
            res = _Result(len(classes))
            if bar is not None:
                bar.reset()
    if not done:
        remaining = set(info_of) if limit is not None else None
        last_end = 0
        for batch in iter_record_batches(objects_file):
            stop = _process_records(batch.records, batch.first_index, state, res, objects_file, batch, remaining)
            if bar is not None:
                bar.update(batch.end_offset - last_end)
            last_end = batch.end_offset
            del batch  # the consumer's reference too: only one batch of records alive at a time
            if stop:
                res.stopped_early = True
                break
    if bar is not None:
        bar.close()
    annotations, per_class, dropped, unmapped = res.annotations, res.per_class, res.dropped, res.unmapped
    # tuples -> COCO dicts (workers send tuples: 3x less to pickle)
    annotations = [{"id": n, "image_id": t[0], "bbox": [t[1], t[2], t[3], t[4]], "area": t[3] * t[4],
                    "iscrowd": 0, "category_id": t[5], "vg_object_id": t[6]}
                   for n, t in enumerate(annotations, 1)]
    res.annotations = []  # free the tuples
    read_s = time.perf_counter() - t_read
    dropped["unmapped"] = sum(unmapped.values())

    if masks is not None:
        from pycocotools import mask as mask_util

        for iid, rles in masks.items():
            img = info_of.get(iid)
            if img is None:
                dropped["person_mask_image_not_kept"] += len(rles)
                continue
            if not rles:
                continue
            try:
                boxes = mask_util.toBbox(rles)
                areas = mask_util.area(rles)
            except Exception as e:  # pycocotools raises bare Exceptions/TypeErrors on bad RLEs
                raise AnnotationError(f"bad RLE ({e})", file=str(person_masks), record=iid) from None
            for r, b, a in zip(rles, boxes.tolist(), areas.tolist()):
                if a <= 0:
                    dropped["person_mask_empty"] += 1
                    continue
                annotations.append({"id": 0, "image_id": iid, "bbox": b, "area": float(a), "iscrowd": 0,
                                    "category_id": person_cls, "segmentation": r})
                per_class[person_cls][img[2]] += 1
            per_class[person_cls][2] += 1

    for n, a in enumerate(annotations, 1):
        a["id"] = n  # person masks came after the boxes
    t_write = time.perf_counter()
    info = {"description": "Visual Genome converted by yeay_nb.convert.vg", "source": "vg",
            "taxonomy": tax.name, "objects": objects_file, "image_data": str(image_data)}
    if images_dir is not None:
        info["images_dir"] = str(images_dir)
    write_coco(out, images=images, annotations=annotations, classes=classes, info=info)
    write_s = time.perf_counter() - t_write

    by_name: Counter = Counter()
    for key, c in unmapped.items():
        first = key[0] if key and key[0] is not None else None
        first = normalize_name(first) if isinstance(first, str) else "<no name>"
        by_name[alias_map.get(first, first) if alias_map else first] += c
    n_val = sum(1 for im in images if im["split"] == "val")
    summary = {
        "source": "vg",
        "out": str(out),
        "objects": objects_file,
        "image_data": str(image_data),
        "taxonomy": tax.name,
        "classes": classes,
        "class_counts": {c: {"train": per_class[i][0], "val": per_class[i][1], "images": per_class[i][2]}
                         for i, c in enumerate(classes) if i > 0},
        "images": {"train": len(images) - n_val, "val": n_val, "total": len(images)},
        "annotations": {"train": sum(r[0] for r in per_class), "val": sum(r[1] for r in per_class),
                        "total": len(annotations)},
        "records_read": res.n_records,
        "objects_read": res.n_objects,
        "duplicates_merged": dropped.get("duplicate", 0),
        "dropped_objects": dict(sorted(dropped.items())),
        "dropped_images": dict(sorted(dropped_images.items())),
        "skipped_records": dict(sorted(res.skipped.items())),
        "stopped_early": res.stopped_early,
        "workers": workers if done else 1,
        "unmapped_names": [[k, v] for k, v in by_name.most_common(50)],
        "distinct_unmapped_keys": len(unmapped),
        "timing": {"read_convert_s": round(read_s, 3), "write_s": round(write_s, 3),
                   "total_s": round(time.perf_counter() - t0, 3)},
    }
    write_json(summary_path(out), summary, indent=1)
    if progress:
        print(format_summary(summary))
    return summary


def summary_path(out: str | os.PathLike) -> Path:
    """Where :func:`convert_vg` writes its summary: ``coco.json`` -> ``coco.summary.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.summary.json")


def format_summary(summary: dict) -> str:
    """The summary as text tables (classes, then images/annotations/drops)."""
    rows = [(c, v["train"], v["val"], v["images"]) for c, v in summary["class_counts"].items()]
    parts = [format_table(rows, ("class", "train", "val", "images"))]
    totals = [("images", summary["images"]["train"], summary["images"]["val"], summary["images"]["total"]),
              ("annotations", summary["annotations"]["train"], summary["annotations"]["val"],
               summary["annotations"]["total"])]
    parts.append(format_table(totals, ("", "train", "val", "total")))
    drops = [(f"objects: {k}", v) for k, v in summary["dropped_objects"].items()]
    drops += [(f"images: {k}", v) for k, v in summary["dropped_images"].items()]
    drops += [(f"records: {k}", v) for k, v in summary["skipped_records"].items()]
    if drops:
        parts.append(format_table(drops, ("dropped", "count")))
    if summary["unmapped_names"]:
        top = ", ".join(f"{n} ({c})" for n, c in summary["unmapped_names"][:10])
        parts.append(f"most frequent unmapped names: {top}")
    t = summary["timing"]
    parts.append(f"{summary['objects_read']} objects in {summary['records_read']} records; "
                 f"read+convert {t['read_convert_s']} s, write {t['write_s']} s, total {t['total_s']} s")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- CLI
def add_cli(subparsers) -> None:
    """Register ``convert vg`` on the ``convert`` subparsers of ``yeay-nb``."""
    p = subparsers.add_parser("vg", help="Visual Genome objects.json + image_data.json -> COCO json",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--image-data", required=True, help="image_data.json")
    p.add_argument("--objects", required=True, help="objects.json or attributes.json (v1.0-v1.4)")
    p.add_argument("--out", required=True, help="output COCO json (summary goes to <stem>.summary.json)")
    p.add_argument("--images-dir", default=None, help="drop images missing from this folder")
    p.add_argument("--taxonomy", default=None, help="taxonomy YAML (default: the 38-class one)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--aliases", default=None, help="object_alias.txt")
    p.add_argument("--limit", type=int, default=None, help="keep the first N images")
    p.add_argument("--person-masks", default=None, help="JSON {image_id: [COCO RLE, ...]}")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.set_defaults(func=_cli_main)


def _cli_main(ns) -> int:
    try:
        convert_vg(ns.image_data, ns.objects, ns.out, images_dir=ns.images_dir, taxonomy=ns.taxonomy,
                   val_fraction=ns.val_fraction, aliases=ns.aliases, limit=ns.limit,
                   person_masks=ns.person_masks, seed=ns.seed, progress=not ns.quiet)
    except YeayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
