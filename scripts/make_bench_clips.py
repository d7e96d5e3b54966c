"""Make the GPU benchmark clips from ``../shared/data/videos/juggle.mp4`` into ``.device/videos/``.

    .venv/bin/python scripts/make_bench_clips.py

960x540 (all 247 frames; INTER_AREA), 1920x1080 (48 frames) and 3840x2160 (24 frames; INTER_CUBIC),
H.264 crf 23 "veryfast" through the synthetic-video writer (atomic). About 2.7 MB in all, so they
travel to the lent GPU machine with ``carry: [".device/videos"]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yeay_nb.synth.videos import _Writer  # noqa: E402
from yeay_nb.video import VideoReader  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "videos" / "juggle.mp4"
CLIPS = (("juggle_960x540.mp4", (960, 540), 247), ("juggle_1080p.mp4", (1920, 1080), 48),
         ("juggle_4k.mp4", (3840, 2160), 24))


def main() -> None:
    out = ROOT / ".device" / "videos"
    out.mkdir(parents=True, exist_ok=True)
    for name, (w, h), n in CLIPS:
        writer = _Writer(out / name, w, h, 24.0, 0, "libx264")
        writer.stream.options = {"crf": "23", "preset": "veryfast"}
        interp = cv2.INTER_AREA if w < 1280 else cv2.INTER_CUBIC
        ok = False
        try:
            with VideoReader(SOURCE) as reader:
                for _, rgb in reader.frames(max_frames=n):
                    writer.write(cv2.cvtColor(cv2.resize(rgb, (w, h), interpolation=interp), cv2.COLOR_RGB2BGR))
            ok = True
        finally:
            writer.close(ok)
        print(name, (out / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
