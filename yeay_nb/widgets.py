"""An ipywidgets explorer for video inference results (notebook 04, interactive runs).

Usage (in JupyterLab)::

    from yeay_nb.widgets import VideoExplorer, has_frontend
    ex = VideoExplorer("videos/", output_dir="work/infer", clothing_model="work/train/model_final.pt",
                       person_model="same")
    if has_frontend():
        display(ex.widget)

    # or straight from an existing output
    ex = VideoExplorer.from_json("work/infer/v1.json", video_path="videos/v1/clip.mp4")

Pick a video and press *load* (reads ``<output_dir>/<video_id>.json``) or *run* (calls
:func:`yeay_nb.infer.run_inference` with a progress bar, then loads). Scrub with the frame
slider or play it; the threshold slider, class filter and mask toggle redraw from cached
results (no inference). Click the timeline (needs ``ipyevents``) or a gallery entry to jump.
*export* writes the same JSON and pictures as ``yeay-nb infer --create-vis``.

Everything a callback does is reachable from Python (``ex.frame_slider.value = 12``,
``ex.timeline_click(x)``, ``ex.gallery_buttons[0].click()``, ``ex.last_drawn``), which is
how the tests drive it without a browser.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import VideoError, YeayError
from .frames import Drawn, FrameCache, FrameRenderer, encode_jpeg, encode_png, frame_step

INTERACTIVE_ENV = "YEAY_NB_INTERACTIVE"


def has_frontend() -> bool:
    """True when the code runs in a Jupyter kernel that a front end (JupyterLab) is attached to.

    ``YEAY_NB_INTERACTIVE=1/0`` decides when set. Otherwise: an IPython kernel (not a
    terminal IPython) that a Jupyter server started for a notebook session. jupyter_server
    gives such a kernel the ``JPY_SESSION_NAME`` environment variable; papermill / nbclient
    start kernels directly and do not, so a papermill run gets False and the notebook shows
    its static pictures instead of widgets nobody can see. A papermill run started from
    inside a JupyterLab kernel inherits that variable, so it only counts when the kernel's
    parent process (``JPY_PARENT_PID``, set by jupyter_client) does not have it too: the
    server itself never does.
    """
    flag = os.environ.get(INTERACTIVE_ENV, "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    if not os.environ.get("JPY_SESSION_NAME"):
        return False
    return not _parent_has_session_env()


def _parent_has_session_env() -> bool:
    """Whether the kernel's parent process was itself started with ``JPY_SESSION_NAME`` (Linux)."""
    ppid = os.environ.get("JPY_PARENT_PID") or str(os.getppid())
    try:
        environ = Path(f"/proc/{int(ppid)}/environ").read_bytes()
    except (OSError, ValueError):  # not Linux, or no permission: trust the variable
        return False
    return b"\0JPY_SESSION_NAME=" in b"\0" + environ


# --------------------------------------------------------------------------- timeline
class Timeline:
    """The items-per-class / blur timeline as an RGB image, with a fast cursor and click mapping.

    The matplotlib figure (:func:`yeay_nb.vis.timeline_figure`) is drawn once per threshold /
    class-filter change; moving the cursor only draws a line on a copy of those pixels.
    """

    def __init__(self, doc: dict, thresh: float = 0.4, class_ids: Sequence[int] | None = None, dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        from .vis import timeline_figure

        keep = None if class_ids is None else set(class_ids)
        view = dict(doc, items=[it for it in doc.get("items", []) if keep is None or it[1] in keep])
        self.frame_indices = list(doc.get("frame_indices") or range(len(doc.get("blur_scores", []))))
        fig = timeline_figure(view, thresh)
        fig.set_dpi(dpi)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        self.rgb = np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])
        h = self.rgb.shape[0]
        top_ax, blur_ax = fig.axes[0], fig.axes[1]
        # data x -> image x is linear: keep two reference points (display y is bottom-up)
        f0, f1 = (self.frame_indices[0], self.frame_indices[-1]) if self.frame_indices else (0, 1)
        if f1 == f0:
            f1 = f0 + 1
        (x0, _), (x1, _) = blur_ax.transData.transform([[f0, 0], [f1, 0]])
        self._f0, self._f1, self._x0, self._x1 = float(f0), float(f1), float(x0), float(x1)
        self.y_top = int(round(h - top_ax.get_window_extent().y1))
        self.y_bottom = int(round(h - blur_ax.get_window_extent().y0))
        self.x_left = float(blur_ax.get_window_extent().x0)
        self.x_right = float(blur_ax.get_window_extent().x1)

    def x_of(self, frame_index: float) -> float:
        """Image x (pixels) of a frame index."""
        return self._x0 + (frame_index - self._f0) * (self._x1 - self._x0) / (self._f1 - self._f0)

    def frame_at(self, x: float) -> int | None:
        """The processed frame nearest to image x, or None for a click left/right of the plot."""
        if not self.frame_indices or x < self.x_left - 2 or x > self.x_right + 2:
            return None
        f = self._f0 + (x - self._x0) * (self._f1 - self._f0) / (self._x1 - self._x0)
        arr = np.asarray(self.frame_indices)
        return int(arr[np.abs(arr - f).argmin()])

    def image(self, frame_index: int | None = None) -> np.ndarray:
        """The timeline with a red cursor at ``frame_index``."""
        import cv2

        out = self.rgb.copy()
        if frame_index is not None:
            x = int(round(self.x_of(frame_index)))
            cv2.line(out, (x, self.y_top), (x, self.y_bottom), (220, 30, 30), 2)
        return out


# --------------------------------------------------------------------------- explorer
def _load_doc(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise YeayError(f"no inference output {path}: press 'run' first") from None
    except json.JSONDecodeError as e:
        raise YeayError(f"file {path}: not valid JSON ({e})") from None
    for key in ("items", "classesInDS"):
        if key not in doc:
            raise YeayError(f"file {path}: field '{key}' is missing (not a yeay_nb inference output?)")
    return doc


class VideoExplorer:
    """The explorer: video/model pickers, run/load, frame view, filters, timeline, gallery, export.

    ``source``: what :func:`yeay_nb.video.resolve_sources` accepts (a video, a folder, a JSON
    manifest or feed) or None. ``infer_kwargs`` go to :func:`yeay_nb.infer.run_inference`
    (e.g. ``infer_kwargs(params.infer)``). ``max_side`` caps the shown frame size;
    ``cache_bytes`` bounds the frame cache. ``autoload`` shows the first picked video whose
    ``<video_id>.json`` already exists.
    """

    def __init__(self, source: Any = None, output_dir: str | os.PathLike = "work/infer",
                 clothing_model: str | os.PathLike | None = None, person_model: str | None = None, *,
                 infer_kwargs: dict | None = None, thresh: float = 0.4, max_side: int = 960,
                 cache_bytes: int = 512 * 2**20, gallery_thumb: int = 160, autoload: bool = False):
        import ipywidgets as W

        self.output_dir = Path(output_dir)
        self.infer_kwargs = {k: v for k, v in (infer_kwargs or {}).items()
                             if k not in ("clothing_model", "person_model")}
        self.max_side, self.cache_bytes, self.gallery_thumb = max_side, cache_bytes, gallery_thumb
        self.doc: dict | None = None
        self.video_path: str | None = None
        self.cache: FrameCache | None = None
        self.renderer: FrameRenderer | None = None
        self.timeline: Timeline | None = None
        self.last_drawn: Drawn | None = None
        self.redraws = 0
        self._busy = False

        self.sources: dict[str, str] = {}
        source_error = ""
        if source is not None:
            from .video import resolve_sources

            kw = {k: self.infer_kwargs[k] for k in ("id_in_filename", "url_rewrite", "storage_options")
                  if self.infer_kwargs.get(k)}  # same video ids as run_inference gives
            try:
                self.sources = {s.video_id: s.loc for s in resolve_sources(source, **kw)}
            except YeayError as e:  # shown in the status line: the explorer still opens
                source_error = f"<span style='color:#b00'>cannot list videos: {e}</span>"
        # pickers ------------------------------------------------------------------
        self.video_picker = W.Dropdown(options=sorted(self.sources), description="video")
        self.clothing_text = W.Text(value=str(clothing_model or ""), description="clothing")
        self.person_text = W.Text(value=str(person_model or ""), description="person", placeholder="same / coco / ckpt")
        self.output_text = W.Text(value=str(self.output_dir), description="output dir")
        self.clobber_box = W.Checkbox(value=False, description="re-run (clobber)", indent=False)
        self.run_button = W.Button(description="run", icon="play", button_style="primary",
                                   tooltip="run inference on this video, then load its result")
        self.load_button = W.Button(description="load", icon="folder-open",
                                    tooltip="load <output dir>/<video_id>.json without re-running")
        self.progress_out = W.Output(layout=W.Layout(max_height="120px", overflow="auto"))
        self.status = W.HTML(value=source_error)
        # viewer -------------------------------------------------------------------
        self.frame_slider = W.IntSlider(value=0, min=0, max=0, step=1, description="frame",
                                        continuous_update=True, layout=W.Layout(width="60%"))
        self.play = W.Play(value=0, min=0, max=0, step=1, interval=100, description="play")
        W.jslink((self.play, "value"), (self.frame_slider, "value"))
        self.thresh_slider = W.FloatSlider(value=thresh, min=0.0, max=1.0, step=0.01, description="score ≥",
                                           readout_format=".2f")
        self.class_filter = W.SelectMultiple(options=[], value=[], description="classes", rows=6)
        self.mask_box = W.Checkbox(value=True, description="person masks", indent=False)
        self.frame_image = W.Image(format="jpeg", layout=W.Layout(max_width="100%"))
        self.info = W.HTML(value="")
        self.timeline_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.gallery = W.VBox([])
        self.gallery_buttons: list = []
        self.export_text = W.Text(value=str(self.output_dir), description="export to")
        self.export_button = W.Button(description="export", icon="download",
                                      tooltip="write <video_id>.json and the --create-vis pictures")
        self._events = None
        try:  # clicks on a plain Image need ipyevents; without it the slider still works
            from ipyevents import Event

            self._events = Event(source=self.timeline_image, watched_events=["click"])
            self._events.on_dom_event(self._on_timeline_event)
        except ImportError:
            pass

        # stable CSS hooks for the browser test and for users' own styling
        for w, name in ((self.frame_image, "yeay-frame"), (self.timeline_image, "yeay-timeline"),
                        (self.frame_slider, "yeay-frame-slider"), (self.thresh_slider, "yeay-thresh-slider"),
                        (self.info, "yeay-info"), (self.status, "yeay-status"), (self.play, "yeay-play")):
            w.add_class(name)

        self.run_button.on_click(lambda _b: self._guard(self.run))
        self.load_button.on_click(lambda _b: self._guard(self.load))
        self.export_button.on_click(lambda _b: self._guard(self.export))
        self.frame_slider.observe(lambda ch: self._guard(self._redraw), names="value")
        for w in (self.thresh_slider, self.class_filter, self.mask_box):
            w.observe(lambda ch: self._guard(self._refilter), names="value")

        self.widget = W.VBox([
            W.HBox([self.video_picker, self.output_text]),
            W.HBox([self.clothing_text, self.person_text]),
            W.HBox([self.run_button, self.load_button, self.clobber_box]),
            self.progress_out, self.status,
            W.HBox([self.play, self.frame_slider]),
            W.HBox([self.frame_image,
                    W.VBox([self.thresh_slider, self.class_filter, self.mask_box, self.info])]),
            self.timeline_image,
            W.HTML("<b>best frames</b> (click to jump)"), self.gallery,
            W.HBox([self.export_text, self.export_button]),
        ])

        if autoload:
            self.autoload()

    def autoload(self) -> bool:
        """Pick and load the first video that has a result in the output dir; False if none."""
        out = Path(self.output_text.value)
        for vid in self.video_picker.options:
            if (out / f"{vid}.json").is_file():
                self.video_picker.value = vid
                self._guard(self.load)
                return self.doc is not None
        return False

    # construction helpers -------------------------------------------------------------
    @classmethod
    def from_json(cls, json_path: str | os.PathLike, video_path: str | os.PathLike | None = None,
                  **kwargs) -> "VideoExplorer":
        """An explorer showing one existing ``<video_id>.json`` (``video_loc`` when no video given)."""
        json_path = Path(json_path)
        ex = cls(output_dir=kwargs.pop("output_dir", json_path.parent), **kwargs)
        ex.load_doc(_load_doc(json_path), video_path)
        return ex

    def _ipython_display_(self):  # `ex` as the last line of a cell shows the widget
        from IPython.display import display

        display(self.widget)

    def _guard(self, fn, *args):
        """Run a callback; a user error shows in the status line instead of a traceback."""
        try:
            return fn(*args)
        except YeayError as e:
            self.status.value = f"<span style='color:#b00'>{type(e).__name__}: {e}</span>"
            return None

    # run / load ---------------------------------------------------------------------
    @property
    def video_id(self) -> str | None:
        if self.doc is not None:
            return self.doc.get("video_id")
        return self.video_picker.value

    def run(self) -> None:
        """Run inference on the picked video (progress bar in the panel), then load the result."""
        from .infer import run_inference

        vid = self.video_picker.value
        if not vid:
            raise YeayError("no video picked (give VideoExplorer a source: a video, folder or manifest)")
        if not self.clothing_text.value.strip() and not self.person_text.value.strip():
            raise YeayError("give a clothing and/or a person model before 'run'")
        out_dir = Path(self.output_text.value)
        kw = dict(self.infer_kwargs, clobber=self.clobber_box.value or self.infer_kwargs.get("clobber", False))
        self.status.value = f"running inference on {vid} ..."
        self.progress_out.clear_output()
        with self.progress_out:  # tqdm.auto draws its widget bar here
            summary = run_inference([self.sources[vid]], out_dir, self.clothing_text.value.strip() or None,
                                    self.person_text.value.strip() or None, **kw)
        if summary.failed:
            raise YeayError(f"inference failed on {vid}: {summary.failed[0].get('reason')}")
        self.load()
        self.status.value = f"{vid}: {summary}"

    def load(self) -> None:
        """Load ``<output dir>/<video_id>.json`` of the picked video (no inference)."""
        vid = self.video_picker.value
        if not vid:
            raise YeayError("no video picked")
        path = Path(self.output_text.value) / f"{vid}.json"
        self.load_doc(_load_doc(path), self.sources.get(vid))

    def load_doc(self, doc: dict, video_path: str | os.PathLike | None = None) -> None:
        """Show ``doc`` (a contract dict) over the frames of ``video_path`` (default: ``video_loc``)."""
        from .video import is_remote

        loc = str(video_path or doc.get("video_loc") or "")
        if not loc or is_remote(loc):
            raise VideoError(f"the explorer needs a local copy of the video (video_loc is {loc!r}): pass video_path")
        if not Path(loc).is_file():
            raise VideoError(f"video file not found: {loc} (field video_loc of {doc.get('video_id')}.json)")
        if self.cache is not None:
            self.cache.close()  # the previous video's decoder; its frames go with the object
        self.doc, self.video_path = doc, loc
        self.cache = FrameCache(loc, max_side=self.max_side, rotate=str(doc.get("video_rotation", 0)),
                                max_bytes=self.cache_bytes)
        self.renderer = FrameRenderer(doc, self.cache)
        fi = self.renderer.frame_indices or [0]
        classes = self.renderer.classes
        counts: dict[int, int] = {}
        for it in doc.get("items", []):
            counts[it[1]] = counts.get(it[1], 0) + 1
        seen = sorted(counts)
        self._busy = True  # one draw at the end, not one per trait change
        try:
            self.class_filter.options = [(f"{classes[c] if c < len(classes) else c} ({counts[c]})", c)
                                         for c in seen]
            self.class_filter.value = tuple(seen)
            step = frame_step(fi)
            for w in (self.frame_slider, self.play):  # widen first: min <= max is validated
                w.min, w.max = 0, max(max(fi), w.max)
                w.max = max(fi)
                w.min, w.step = min(fi), step
            self.frame_slider.value = min(fi)
            self.play.interval = max(20, int(1000 * step / (doc.get("video_fps") or 10)))
        finally:
            self._busy = False
        self.export_text.value = self.export_text.value or str(self.output_dir)
        self._build_gallery()
        self._refilter()
        self.status.value = (f"{doc.get('video_id')}: {len(doc.get('items', []))} items over {len(fi)} frames "
                             f"({self.cache.src_w}×{self.cache.src_h}, "
                             f"shown at {self.cache.width}×{self.cache.height})")

    # drawing ------------------------------------------------------------------------
    @property
    def class_ids(self) -> tuple:
        return tuple(self.class_filter.value)

    def _refilter(self) -> None:
        """Threshold / classes / masks changed: rebuild the timeline, redraw the frame."""
        if self.doc is None or self._busy:
            return
        self.timeline = Timeline(self.doc, self.thresh_slider.value, self.class_ids)
        self._redraw()

    def _redraw(self) -> None:
        """Draw the current frame and move the timeline cursor (cached data only)."""
        if self.renderer is None or self._busy:
            return
        f = int(self.frame_slider.value)
        jpeg, drawn = self.renderer.render_jpeg(f, self.thresh_slider.value, self.class_ids, self.mask_box.value)
        self.frame_image.value = jpeg
        self.last_drawn = drawn
        self.redraws += 1
        if self.timeline is not None:
            self.timeline_image.value = encode_png(self.timeline.image(f))
        row = self.renderer._row.get(f)
        blur = self.doc.get("blur_scores", [])
        b = f"{blur[row][0][0]:.2f}" if row is not None and row < len(blur) else "–"
        self.info.value = (f"frame <b>{f}</b> · {len(drawn.items)} items shown · "
                           f"{drawn.masks} masks · blur {b}")

    def show_frame(self, frame_index: int) -> None:
        """Jump to a frame (snapped to the slider's range and step)."""
        self.frame_slider.value = int(frame_index)

    # timeline clicks ------------------------------------------------------------------
    def timeline_click(self, x: float) -> int | None:
        """A click at image x (pixels of the timeline PNG): jump to that frame; returns it."""
        if self.timeline is None:
            return None
        f = self.timeline.frame_at(x)
        if f is not None:
            self.show_frame(f)
        return f

    def _on_timeline_event(self, event: dict) -> None:
        x = event.get("dataX")
        if x is None and event.get("boundingRectWidth") and self.timeline is not None:
            # fall back to the displayed size: the PNG may be shown scaled
            x = event["relativeX"] * self.timeline.rgb.shape[1] / event["boundingRectWidth"]
        if x is not None:
            self._guard(self.timeline_click, float(x))

    # gallery ------------------------------------------------------------------------
    def _thumb(self, rgb: np.ndarray) -> bytes:
        import cv2

        h, w = rgb.shape[:2]
        s = self.gallery_thumb / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        return encode_jpeg(small, 85)

    def _build_gallery(self) -> None:
        import ipywidgets as W

        doc, r, cache = self.doc, self.renderer, self.cache
        entries: list[tuple[str, int, bytes]] = []
        for k, f in enumerate(doc.get("top_N_frames", []), start=1):
            rgb, _ = r.render(f, self.thresh_slider.value, None, False)
            entries.append((f"top {k}: frame {f}", int(f), self._thumb(rgb)))
        best = doc.get("top_frames_each_class") or [[], []]
        for c, (f, box) in enumerate(zip(*best)):
            if f is None or f < 0 or box is None:
                continue
            from .vis import crop_box

            s = cache.scale
            crop = crop_box(cache.get(f), [v * s for v in box])
            name = r.classes[c] if c < len(r.classes) else str(c)
            entries.append((f"{name}: frame {f}", int(f), self._thumb(crop)))
        cards, self.gallery_buttons = [], []
        for title, f, jpeg in entries:
            b = W.Button(description=title, tooltip=f"show frame {f}", layout=W.Layout(width=f"{self.gallery_thumb}px"))
            b.frame_index = f
            b.on_click(lambda btn: self._guard(self.show_frame, btn.frame_index))
            self.gallery_buttons.append(b)
            cards.append(W.VBox([W.Image(value=jpeg, format="jpeg"), b]))
        rows = [W.HBox(cards[i:i + 6]) for i in range(0, len(cards), 6)]
        self.gallery.children = rows or [W.HTML("<i>no best frames in this output</i>")]

    # export -------------------------------------------------------------------------
    def export(self) -> dict:
        """Write ``<export dir>/<video_id>.json`` and ``<export dir>/<video_id>/`` pictures
        (the ``--create-vis`` set, boxes above the current threshold). Returns the paths."""
        from .atomic import write_json
        from .vis import write_video_pictures

        if self.doc is None:
            raise YeayError("nothing to export: load or run a video first")
        out = Path(self.export_text.value or self.output_dir)
        vid = self.doc["video_id"]
        json_path = out / f"{vid}.json"
        out.mkdir(parents=True, exist_ok=True)
        write_json(json_path, self.doc)
        pictures = write_video_pictures(self.doc, self.video_path, out / vid, thresh=self.thresh_slider.value)
        n = sum(len(v) for v in pictures.values())
        self.status.value = f"exported {json_path} and {n} pictures to {out / vid}"
        return {"json": json_path, **pictures}
