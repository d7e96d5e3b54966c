"""Sources, manifests, sharding, decoding, rotation: yeay_nb.video."""
import json
from pathlib import Path

import av
import numpy as np
import pytest

from yeay_nb.errors import ParamsError, VideoError
from yeay_nb.video import (VideoReader, apply_url_rewrite, count_frames, fetch, parse_url_rewrite, prefetch,
                           read_frames, resolve_sources, shard)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_video(path, n=6, w=64, h=32, rotation=None, fps=10, tint=False):
    """n frames; frame i has its left quarter white and brightness i*10 elsewhere (``tint``: the other
    three quarters in red, green and blue, brightness i*10 in their other channels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(n):
            a = np.full((h, w, 3), i * 10, np.uint8)
            a[:, : w // 4] = 255
            if tint:
                for q in range(3):
                    a[:, (q + 1) * w // 4:(q + 2) * w // 4, q] = 230
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def write_empty_video(path):
    """A container with a video stream header and no frames."""
    out = av.open(str(path), "w")
    s = out.add_stream("mpeg4", rate=10)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    out.start_encoding()
    out.close()
    return path


def test_folder_layout_ids_from_parent_and_flat_collisions_use_stems(tmp_path):
    write_video(tmp_path / "a" / "vid123" / "video.mp4", n=1)
    write_video(tmp_path / "a" / "vid456" / "video.mp4", n=1)
    ids = [s.video_id for s in resolve_sources(tmp_path / "a")]
    assert ids == ["vid123", "vid456"]  # the 2018 default: the parent folder's name
    write_video(tmp_path / "flat" / "u1_clip.mp4", n=1)
    write_video(tmp_path / "flat" / "u2_clip.mov", n=1)
    (tmp_path / "flat" / "notes.txt").write_text("not a video")
    assert [s.video_id for s in resolve_sources(tmp_path / "flat")] == ["u1_clip", "u2_clip"]
    assert [s.video_id for s in resolve_sources(tmp_path / "flat", id_in_filename=True)] == ["u1", "u2"]


def test_json_list_and_feed_with_url_rewrite(tmp_path):
    write_video(tmp_path / "v" / "x1" / "video.mp4", n=1)
    (tmp_path / "list.json").write_text(json.dumps(["v/x1/video.mp4", "https://cdn.example.net/x2/clip.mp4"]))
    srcs = resolve_sources(tmp_path / "list.json", url_rewrite=["https://cdn.example.net=s3://bucket"])
    assert [(s.video_id, s.loc) for s in srcs] == [("x1", str(tmp_path / "v/x1/video.mp4")),
                                                  ("x2", "s3://bucket/x2/clip.mp4")]
    assert srcs[1].src == "https://cdn.example.net/x2/clip.mp4"
    feed = [{"id": 42, "sourceMediaUrl": "https://cdn.example.net/a/b.mp4", "title": "t"},
            {"id": "7", "sourceMediaUrl": "https://other/c.mp4"}]
    (tmp_path / "feed.json").write_text(json.dumps(feed))
    srcs = resolve_sources(tmp_path / "feed.json", url_rewrite=["https://cdn.example.net=s3://bucket"])
    assert [(s.video_id, s.loc) for s in srcs] == [("42", "s3://bucket/a/b.mp4"), ("7", "https://other/c.mp4")]


def test_bad_inputs_raise_params_errors_naming_the_problem(tmp_path):
    with pytest.raises(ParamsError, match="no such video"):
        resolve_sources(tmp_path / "missing.mp4")
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ParamsError, match="bad.json.*not valid JSON"):
        resolve_sources(tmp_path / "bad.json")
    (tmp_path / "feed.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(ParamsError, match="sourceMediaUrl"):
        resolve_sources(tmp_path / "feed.json")
    with pytest.raises(ParamsError, match="FROM=TO"):
        parse_url_rewrite(["no-equals-sign"])
    assert apply_url_rewrite("https://a/b", parse_url_rewrite(["https://a=/mnt"])) == "/mnt/b"


def test_shards_are_disjoint_and_cover_the_manifest():
    srcs = resolve_sources([f"/v/{i:02d}_x/video.mp4" for i in range(11)])
    parts = [shard(srcs, r, 3) for r in range(3)]
    flat = [s for p in parts for s in p]
    assert sorted(flat, key=lambda s: s.video_id) == srcs and len(set(flat)) == len(srcs)
    assert shard(list(reversed(srcs)), 1, 3) == parts[1]  # input order does not matter
    # already-resolved sources pass through unchanged (a feed id survives a re-run of one video)
    assert resolve_sources([srcs[4]]) == [srcs[4]] and resolve_sources(srcs[4]) == [srcs[4]]


def test_world_from_env_reads_torchrun_variables(monkeypatch):
    from yeay_nb.video import world_from_env

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world_from_env() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert world_from_env() == (2, 4)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ParamsError, match="RANK=4"):
        world_from_env()


def test_frames_stride_max_frames_and_decoded_count(tmp_path):
    p = write_video(tmp_path / "v.mp4", n=9)
    assert count_frames(p) == 9
    with VideoReader(p) as r:
        got = [(i, int(rgb[0, -1, 0])) for i, rgb in r.frames(stride=3, max_frames=8)]
        assert r.decoded == 8
    assert [i for i, _ in got] == [0, 3, 6]
    assert [v for _, v in got] == pytest.approx([0, 30, 60], abs=4)  # the right frames, in order
    assert set(read_frames(p, [2, 5])) == {2, 5}


@pytest.mark.parametrize("ccw, expect_cw", [(90, 270), (-90, 90), (180, 180)])
def test_rotation_metadata_is_honoured(tmp_path, ccw, expect_cw):
    p = write_video(tmp_path / "r.mp4", n=2, w=64, h=32, rotation=ccw)
    with VideoReader(p) as r:
        assert r.info.rotation == expect_cw
        rgb = next(r.frames())[1]
    h, w = (64, 32) if expect_cw in (90, 270) else (32, 64)
    assert rgb.shape == (h, w, 3) and (r.info.width, r.info.height) == (w, h)
    # where the stored left (white) quarter ends up once upright
    white = rgb[..., 0] > 200
    region = {90: white[:16].all(), 270: white[-16:].all(), 180: white[:, -16:].all()}[expect_cw]
    assert region and white.mean() == pytest.approx(0.25, abs=0.02)
    with VideoReader(p, rotate="0") as r:  # manual override wins
        assert r.info.rotation == 0 and next(r.frames())[1].shape == (32, 64, 3)


def test_unreadable_videos_raise_video_error(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        VideoReader(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VideoError, match="junk.mp4"):
        VideoReader(junk)
    empty = write_empty_video(tmp_path / "empty.avi")
    with pytest.raises(VideoError, match="zero frames decoded from .*empty.avi"):
        VideoReader(empty)
    with pytest.raises(ParamsError):
        VideoReader(write_video(tmp_path / "ok.mp4", n=1), rotate="45")


def test_fetch_local_and_memory_url(tmp_path):
    import fsspec

    p = write_video(tmp_path / "v.mp4", n=3)
    with fetch(str(p)) as local:
        assert local == p
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/v.mp4", p.read_bytes())
    with fetch("memory://bucket/v.mp4", tmp_dir=tmp_path) as local:
        assert local != p and count_frames(local) == 3
    assert not local.exists()  # the temporary download is gone
    with pytest.raises(VideoError, match="cannot read memory://bucket/none.mp4"):
        with fetch("memory://bucket/none.mp4"):
            pass


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(iter(range(50)), maxsize=3)) == list(range(50))

    def bad():
        yield 1
        raise VideoError("boom")

    with pytest.raises(VideoError, match="boom"):
        list(prefetch(bad()))


def test_shared_video_frame_count_is_decoded_not_header():
    juggle = DATA / "videos" / "juggle.mp4"
    if not juggle.exists():
        pytest.skip(f"shared videos not found at {juggle.parent}")
    with VideoReader(juggle) as r:
        assert (r.info.width, r.info.height, r.info.rotation) == (1280, 720, 0)
        assert r.info.fps == pytest.approx(24.0)
        idx = [i for i, _ in r.frames(stride=100)]
        assert r.decoded == 247 and idx == [0, 100, 200]


@pytest.mark.parametrize("stride, max_frames, rotate", [(1, None, "auto"), (3, 8, "auto"), (2, None, "90")])
def test_opencv_frames_are_pyavs_pixels_indices_and_count(tmp_path, stride, max_frames, rotate):
    """frames(opencv=True) (the decode thread's OpenCV reader): the same frames, pixel for pixel."""
    p = write_video(tmp_path / "v.mp4", n=9, w=96, h=48, tint=True)
    out = {}
    for opencv in (False, True):
        with VideoReader(p, rotate=rotate) as r:
            out[opencv] = ([(i, rgb.copy()) for i, rgb in r.frames(stride, max_frames, opencv=opencv)], r.decoded)
    (a, na), (b, nb) = out[False], out[True]
    assert na == nb == (max_frames or 9)
    assert [i for i, _ in a] == [i for i, _ in b] == list(range(0, na, stride))
    for (_, x), (_, y) in zip(a, b):
        assert x.shape == y.shape and np.array_equal(x, y)
    red = a[-1][1][:, 30:40] if rotate == "auto" else a[-1][1][30:40]  # the second quarter, upright
    assert red[..., 0].mean() > red[..., 1].mean() + 50  # RGB order, not BGR


def test_opencv_frames_go_on_with_pyav_when_opencv_stops_early(tmp_path, monkeypatch):
    """OpenCV ending before the container's frame count (a broken stream) hands over to PyAV, which
    decodes the rest (or raises, as it would alone)."""
    import cv2

    p = write_video(tmp_path / "v.mp4", n=9)

    class Stops:  # OpenCV's reader, ending after 4 frames
        def __init__(self):
            self.cap, self.n = cv2.VideoCapture(str(p)), 0

        def read(self):
            self.n += 1
            return self.cap.read() if self.n <= 4 else (False, None)

        def release(self):
            self.cap.release()

    with VideoReader(p) as r:
        ref = [(i, rgb.copy()) for i, rgb in r.frames()]
    with VideoReader(p) as r:
        monkeypatch.setattr(r, "_opencv_twin", Stops)
        got = [(i, rgb.copy()) for i, rgb in r.frames(opencv=True)]
        assert r.decoded == 9
    assert [i for i, _ in got] == list(range(9))
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(ref, got))


@pytest.mark.parametrize("stride, max_frames", [(1, None), (3, 8)])
def test_opencv_fallback_gives_pyavs_frames_where_pyav_cannot_open(tmp_path, monkeypatch, stride, max_frames):
    """A video PyAV cannot open is read by OpenCV alone: the same indices, pixels and decoded count."""
    p = write_video(tmp_path / "v.mp4", n=9, w=96, h=48, tint=True)
    with VideoReader(p) as r:
        want = [(i, rgb.copy()) for i, rgb in r.frames(stride, max_frames)], r.decoded

    def no_pyav(self):
        raise VideoError("PyAV refused it (test)")

    monkeypatch.setattr(VideoReader, "_open_pyav", no_pyav)
    with VideoReader(p) as r:
        assert r._cap is not None and r._container is None
        got = [(i, rgb.copy()) for i, rgb in r.frames(stride, max_frames)], r.decoded
    assert got[1] == want[1] == (max_frames or 9)
    assert [i for i, _ in got[0]] == [i for i, _ in want[0]] == list(range(0, want[1], stride))
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(got[0], want[0]))
