"""Video sources (local, fsspec URLs, manifests, feeds), decoding and phone rotation.

Usage::

    from yeay_nb.video import resolve_sources, shard, fetch, VideoReader
    sources = resolve_sources("videos/", id_in_filename=False, url_rewrite=["https://cdn.x=s3://b"])
    for src in shard(sources):                      # this process's share under torchrun
        with fetch(src.loc) as path, VideoReader(path, rotate="auto") as reader:
            reader.info.width, reader.info.height, reader.info.fps, reader.info.rotation
            for frame_index, rgb in reader.frames(stride=2, max_frames=100):
                ...                                   # rgb: H×W×3 uint8, upright

``resolve_sources`` accepts a video file, a folder of videos (searched recursively), a
JSON list of paths/URLs, or a catalog feed (a JSON list of objects with ``id`` and
``sourceMediaUrl``); the JSON itself may be remote. Frame indices are 0-based and count
every decoded frame, whatever the stride.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np

from .errors import ParamsError, VideoError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp")
REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "http://", "https://", "az://", "abfs://", "memory://")


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class VideoSource:
    """One video to process: its id, where to read it and where the manifest said it was."""

    video_id: str
    loc: str  # after --url-rewrite
    src: str  # as given in the input (equals loc without a rewrite)


def is_remote(loc: str) -> bool:
    """True for URLs that go through fsspec (s3://, http(s)://, ...)."""
    return str(loc).lower().startswith(REMOTE_PREFIXES)


def parse_url_rewrite(rules: Sequence[str] | None) -> list[tuple[str, str]]:
    """``["https://cdn.example.net=s3://bucket"]`` -> ``[("https://cdn.example.net", "s3://bucket")]``."""
    out = []
    for i, rule in enumerate(rules or []):
        # URLs contain "://" but never "=" before the prefix ends, so split at the first "=".
        frm, sep, to = str(rule).partition("=")
        if not sep or not frm:
            raise ParamsError(f"expected FROM=TO, got {rule!r}", key=f"url_rewrite[{i}]")
        out.append((frm, to))
    return out


def apply_url_rewrite(loc: str, rules: Sequence[tuple[str, str]]) -> str:
    """Replace the first matching prefix (CDN -> bucket or mount)."""
    for frm, to in rules:
        if loc.startswith(frm):
            return to + loc[len(frm):]
    return loc


def _basename(loc: str) -> PurePosixPath:
    return PurePosixPath(urlparse(loc).path) if is_remote(loc) else PurePosixPath(Path(loc).as_posix())


def _videos_beside(loc: str) -> int:
    """How many videos share a local file's folder (0 for URLs: unknown)."""
    if is_remote(loc):
        return 0
    try:
        return sum(1 for q in Path(loc).parent.iterdir() if q.suffix.lower() in VIDEO_EXTENSIONS)
    except OSError:
        return 0


def _default_id(loc: str, id_in_filename: bool) -> str:
    p = _basename(loc)
    if id_in_filename:
        return p.name.split("_", 1)[0] or p.stem
    if _videos_beside(loc) > 1:
        # a folder of many videos is not a per-video folder: the stem, as in a folder run
        return p.stem
    return p.parent.name or p.stem  # the 2018 default: the parent folder's name


def _read_json(loc: str, storage_options: dict | None):
    try:
        if is_remote(loc):
            import fsspec

            with fsspec.open(loc, "rt", encoding="utf-8", **(storage_options or {})) as f:
                return json.load(f)
        return json.loads(Path(loc).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ParamsError(f"manifest is not valid JSON: {e}", file=loc, key="input") from None
    except (OSError, ValueError) as e:
        raise ParamsError(f"cannot read manifest: {e}", file=loc, key="input") from None


def _entries_from_manifest(data, manifest: str) -> list[tuple[str | None, str]]:
    """(id or None, location) pairs from a JSON list of paths/URLs or a catalog feed."""
    if isinstance(data, dict):  # tolerate {"items": [...]} wrappers around a feed
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ParamsError("expected a JSON list of paths/URLs or of {id, sourceMediaUrl} objects",
                              file=manifest, key="input")
        data = lists[0]
    if not isinstance(data, list):
        raise ParamsError("expected a JSON list", file=manifest, key="input")
    base = None if is_remote(manifest) else Path(manifest).resolve().parent
    out = []
    for i, entry in enumerate(data):
        vid = None
        if isinstance(entry, dict):
            loc = entry.get("sourceMediaUrl") or entry.get("url") or entry.get("path")
            if not isinstance(loc, str) or not loc:
                raise ParamsError(f"entry {i} has no 'sourceMediaUrl'", file=manifest, key=f"[{i}].sourceMediaUrl")
            if entry.get("id") is not None:
                vid = str(entry["id"])
        elif isinstance(entry, str) and entry:
            loc = entry
        else:
            raise ParamsError(f"entry {i} is neither a path/URL nor an object", file=manifest, key=f"[{i}]")
        if base is not None and not is_remote(loc) and not Path(loc).is_absolute():
            loc = str(base / loc)  # relative paths mean "next to the manifest"
        out.append((vid, loc))
    return out


def resolve_sources(input: str | os.PathLike | Sequence[str], *, id_in_filename: bool = False,
                    url_rewrite: Sequence[str] | None = None, storage_options: dict | None = None) -> list[VideoSource]:
    """Expand ``input`` into videos, sorted by (video_id, loc) so shards are deterministic.

    Videos that share a parent folder would share the 2018 default id; those fall back to
    their file stem (and ``-2``, ``-3`` suffixes if even that collides). A missing file
    listed in a manifest is kept: it becomes a recorded failure, not a crash of the whole
    run. :class:`VideoSource` objects (one or a list) pass through unchanged, so a caller
    can re-run one video of a feed under its feed id.
    """
    rules = parse_url_rewrite(url_rewrite)
    entries: list[tuple[str | None, str]]
    if isinstance(input, VideoSource):
        input = [input]
    if isinstance(input, (list, tuple)) and input and all(isinstance(x, VideoSource) for x in input):
        return sorted(input, key=lambda s: (s.video_id, s.loc))  # already resolved: ids and locations kept
    if isinstance(input, (list, tuple)):
        entries = [(None, str(x)) for x in input]
    else:
        loc = str(input)
        if loc.lower().endswith(".json"):
            entries = _entries_from_manifest(_read_json(loc, storage_options), loc)
        elif is_remote(loc):
            entries = [(None, loc)]
        else:
            p = Path(loc)
            if p.is_dir():
                files = sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_EXTENSIONS and q.is_file()
                               and not q.name.startswith("."))
                entries = [(None, str(q)) for q in files]
            elif p.exists():
                entries = [(None, str(p))]
            else:
                raise ParamsError(f"no such video, folder or manifest: {loc}", key="input")
    # ids: explicit (feed) first, then the chosen rule; resolve collisions deterministically
    chosen = []
    for vid, loc in entries:
        chosen.append((vid, _default_id(loc, id_in_filename) if vid is None else vid, loc))
    counts: dict[str, int] = {}
    for explicit, vid, _ in chosen:
        counts[vid] = counts.get(vid, 0) + 1
    seen: set[tuple[str, str]] = set()
    out: list[VideoSource] = []
    used: set[str] = set()
    for explicit, vid, loc in sorted(chosen, key=lambda t: (t[1], t[2])):
        if (vid, loc) in seen:
            continue  # the same video listed twice
        seen.add((vid, loc))
        if counts[vid] > 1 and explicit is None and not id_in_filename:
            vid = _basename(loc).stem
        base, k = vid, 2
        while vid in used:
            vid, k = f"{base}-{k}", k + 1
        used.add(vid)
        out.append(VideoSource(video_id=vid, loc=apply_url_rewrite(loc, rules), src=loc))
    return sorted(out, key=lambda s: (s.video_id, s.loc))


def world_from_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's RANK / WORLD_SIZE, (0, 1) outside it."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ParamsError("RANK and WORLD_SIZE must be integers", key="RANK/WORLD_SIZE") from None
    if world < 1 or not 0 <= rank < world:
        raise ParamsError(f"bad RANK={rank} for WORLD_SIZE={world}", key="RANK/WORLD_SIZE")
    return rank, world


def shard(sources: Sequence[VideoSource], rank: int | None = None, world_size: int | None = None) -> list[VideoSource]:
    """This process's share: the sorted manifest's ``[rank::world_size]`` (the union over
    ranks is the whole manifest, each video exactly once)."""
    if rank is None or world_size is None:
        rank, world_size = world_from_env()
    ordered = sorted(sources, key=lambda s: (s.video_id, s.loc))
    return ordered[rank::world_size]


@contextlib.contextmanager
def fetch(loc: str, *, tmp_dir: str | os.PathLike | None = None, storage_options: dict | None = None) -> Iterator[Path]:
    """A local path for ``loc``: the file itself, or a temporary download of a URL via fsspec
    (deleted on exit). Raises :class:`VideoError` when it cannot be read."""
    if not is_remote(loc):
        p = Path(loc)
        if not p.is_file():
            raise VideoError(f"video file not found: {loc}")
        yield p
        return
    import fsspec

    suffix = _basename(loc).suffix or ".mp4"
    fd, tmp = tempfile.mkstemp(prefix=".yeay-video-", suffix=suffix, dir=tmp_dir)
    try:
        try:
            with os.fdopen(fd, "wb") as out, fsspec.open(loc, "rb", **(storage_options or {})) as f:
                shutil.copyfileobj(f, out, length=4 << 20)
        except Exception as e:  # fsspec backends raise many types (OSError, ClientError, ...)
            raise VideoError(f"cannot read {loc}: {type(e).__name__}: {e}") from None
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# --------------------------------------------------------------------------- decoding
@dataclass
class VideoInfo:
    """What the container says (``width``/``height`` as displayed, after rotation)."""

    width: int
    height: int
    fps: float
    header_frames: int  # the container's count; may be wrong (2018 trusted it)
    rotation: int  # clockwise degrees applied to decoded frames
    backend: str  # "pyav" or "opencv"

    @property
    def frame_count(self) -> int:
        """The header's frame count (a hint for progress bars; ``video_fcnt`` counts decoded frames)."""
        return self.header_frames


def _rotation_cw(frame, stream) -> int:
    """Clockwise degrees that make a decoded PyAV frame upright.

    Phones store a display matrix (read by PyAV as ``frame.rotation``: counter-clockwise
    degrees); older files carry a ``rotate`` tag (clockwise degrees)."""
    ccw = getattr(frame, "rotation", None)
    if ccw:
        return int(round(-float(ccw) / 90.0)) * 90 % 360
    tag = (stream.metadata or {}).get("rotate")
    if tag:
        with contextlib.suppress(ValueError):
            return int(round(float(tag) / 90.0)) * 90 % 360
    return 0


def rotate_frame(rgb: np.ndarray, cw: int) -> np.ndarray:
    """Rotate an H×W×C image clockwise by 0/90/180/270 degrees (contiguous result)."""
    k = (cw // 90) % 4
    return rgb if k == 0 else np.ascontiguousarray(np.rot90(rgb, k=-k))


def _parse_rotate(rotate: str | int) -> int | None:
    if str(rotate) == "auto":
        return None
    try:
        val = int(rotate)
    except ValueError:
        val = -1
    if val not in (0, 90, 180, 270):
        raise ParamsError(f"expected auto, 0, 90, 180 or 270, got {rotate!r}", key="rotate")
    return val


class VideoReader:
    """Decode a video once, frame by frame, upright (PyAV; OpenCV if PyAV cannot open it).

    The first frame is decoded on open, so an unreadable or empty video fails here with a
    :class:`VideoError` and ``info.rotation`` is known before the loop starts.
    """

    def __init__(self, path: str | os.PathLike, rotate: str | int = "auto"):
        self.path = str(path)
        self._manual = _parse_rotate(rotate)
        self._container = None
        self._cap = None
        self._twin = None  # frames(opencv=True)'s OpenCV capture while it runs
        self._first = None
        if not Path(self.path).is_file():
            raise VideoError(f"video file not found: {self.path}")
        try:
            self._open_pyav()
        except VideoError as first_error:
            try:
                self._open_opencv()
            except VideoError:
                raise first_error from None

    # PyAV ---------------------------------------------------------------
    def _open_pyav(self) -> None:
        import av

        try:
            self._container = av.open(self.path)
            if not self._container.streams.video:
                raise VideoError(f"no video stream in {self.path}")
            stream = self._stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads inside libavcodec
            self._decoder = self._container.decode(stream)
            first = next(self._decoder, None)
        except VideoError:
            self.close()
            raise
        except (av.error.FFmpegError, OSError, ValueError) as e:
            self.close()
            raise VideoError(f"cannot decode {self.path}: {e}") from None
        if first is None:
            self.close()
            raise VideoError(f"zero frames decoded from {self.path}")
        auto = _rotation_cw(first, stream)
        rot = auto if self._manual is None else self._manual
        w, h = first.width, first.height
        if rot in (90, 270):
            w, h = h, w
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        self.info = VideoInfo(w, h, fps, int(stream.frames or 0), rot, "pyav")
        self._first = first

    def _pyav_frames(self) -> Iterator:
        import av

        yield self._first
        self._first = None
        try:
            yield from self._decoder
        except av.error.FFmpegError as e:
            raise VideoError(f"decoding {self.path} failed mid-stream: {e}") from None

    # OpenCV fallback ------------------------------------------------------
    def _open_opencv(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.path)
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # we rotate ourselves (manual override only)
        ok, bgr = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            cap.release()
            raise VideoError(f"cannot decode {self.path} with PyAV or OpenCV")
        self._cap = cap
        rot = self._manual or 0
        h, w = bgr.shape[:2]
        if rot in (90, 270):
            w, h = h, w
        self.info = VideoInfo(w, h, float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                              int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), rot, "opencv")
        self._first = bgr

    # public ---------------------------------------------------------------
    def frames(self, stride: int = 1, max_frames: int | None = None,
               opencv: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_index, rgb)`` for frames ``0, stride, 2*stride, ...`` below ``max_frames``.

        Every frame is decoded (inter-coded video needs it) but only the kept ones are
        converted to RGB, which is most of the per-frame CPU cost. ``self.decoded`` counts the
        frames decoded so far (the contract's ``video_fcnt``).

        ``opencv``: where PyAV opened the video, decode it again with OpenCV's FFmpeg reader (the
        same libavcodec and swscale, so the same pixels: tested). Why: each ``read`` is one call that
        frees the GIL for the whole decode and conversion, where PyAV's generator takes the GIL back
        several times a frame, and beside busy model threads each take can wait a switch interval.
        Orientation is still PyAV's (OpenCV's own rotation is switched off). Falls back to PyAV if
        OpenCV cannot open the file, and goes on with PyAV if OpenCV ends before the container's
        frame count (a broken stream: PyAV then raises as without ``opencv``).
        """
        if stride < 1:
            raise ParamsError(f"must be at least 1, got {stride}", key="stride")
        if max_frames is not None and max_frames < 1:
            raise ParamsError(f"must be at least 1, got {max_frames}", key="max_frames")
        self.decoded = 0
        rot = self.info.rotation
        if self._cap is not None:  # PyAV could not open it
            yield from self._opencv_frames(self._cap, stride, max_frames, rot, first=self._first)
            return
        skip = 0
        cap = self._opencv_twin() if opencv and self._container is not None else None
        if cap is not None:
            try:
                yield from self._opencv_frames(cap, stride, max_frames, rot)
            finally:
                cap.release()
                self._twin = None
            header = self.info.header_frames
            if not header or self.decoded >= header or (max_frames is not None and self.decoded >= max_frames):
                return
            # OpenCV stopped before the container's count: it ends quietly on a broken stream, where
            # PyAV raises. PyAV decodes the frames again from the start and goes on past them (or raises);
            # where the header merely overstates the count, that is a second decode for nothing.
            skip = self.decoded
        for k, frame in enumerate(self._pyav_frames()):
            if k < skip:
                continue
            if max_frames is not None and self.decoded >= max_frames:
                break
            i = self.decoded
            self.decoded += 1
            if i % stride == 0:
                yield i, rotate_frame(frame.to_ndarray(format="rgb24"), rot)

    def _opencv_twin(self):
        """An OpenCV capture of the same file at frame 0 (no auto-rotation), or None."""
        import cv2

        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            return None
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self._twin = cap
        return cap

    def _opencv_frames(self, cap, stride: int, max_frames: int | None, rot: int,
                       first: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`frames` from an OpenCV capture (``first``: its frame 0, read already); the frames
        skipped by ``stride`` are only grabbed (decoded, not converted)."""
        import cv2

        bgr = first
        while max_frames is None or self.decoded < max_frames:
            i = self.decoded
            if bgr is None:
                if i % stride:
                    if not cap.grab():
                        return
                    self.decoded += 1
                    continue
                ok, bgr = cap.read()
                if not ok:
                    return
            self.decoded += 1
            if i % stride == 0:
                yield i, rotate_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rot)
            bgr = None

    def close(self) -> None:
        """Release the container (idempotent)."""
        if self._twin is not None:
            self._twin.release()
            self._twin = None
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_frames(path: str | os.PathLike) -> int:
    """Decode every frame and count them (the ground truth for ``video_fcnt``)."""
    with VideoReader(path, rotate=0) as r:
        for _ in r.frames(stride=10**9):  # converts only frame 0 to RGB
            pass
        return r.decoded


def read_frames(path: str | os.PathLike, indices: Iterable[int], rotate: str | int = "auto") -> dict[int, np.ndarray]:
    """``{frame_index: rgb}`` for the wanted 0-based indices (one decode pass, stops after the last)."""
    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    out: dict[int, np.ndarray] = {}
    if not wanted:
        return out
    with VideoReader(path, rotate=rotate) as r:
        want = set(wanted)
        for i, rgb in _selected(r, want, wanted[-1]):
            out[i] = rgb
    return out


def _selected(reader: "VideoReader", want: set, last: int) -> Iterator[tuple[int, np.ndarray]]:
    # like frames(), but converts only the wanted frames to RGB
    rot = reader.info.rotation
    if reader._cap is not None:
        for i, rgb in reader.frames(stride=1, max_frames=last + 1):
            if i in want:
                yield i, rgb
        return
    for i, frame in enumerate(reader._pyav_frames()):
        if i > last:
            break
        if i in want:
            yield i, rotate_frame(frame.to_ndarray(format="rgb24"), rot)


_END = object()


def prefetch(iterator: Iterator, maxsize: int = 16) -> Iterator:
    """Run ``iterator`` in a background thread, ``maxsize`` items ahead of the consumer.

    Decoding and colour conversion release the GIL, so on CPU this overlaps decoding with
    inference, and on GPU it keeps the device fed. Exceptions are re-raised in the consumer.
    Closing the generator early (break) stops the thread at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, name="yeay-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        t.join(timeout=5)
