"""The decode process (yeay_nb.decode_worker): the same frames, blur scores and counts as decoding in
this process; back-pressure; early stops, bad files and a dead worker."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from yeay_nb import decode_worker, scoring
from yeay_nb.errors import VideoError
from yeay_nb.fastpath import InputSpec, cpu_presize
from yeay_nb.video import VideoReader


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A rotated 96x80 video (stored 80x96... shown 80 wide after the 90-degree turn) and a plain one."""
    from yeay_nb.synth.videos import make_videos

    return make_videos(tmp_path_factory.mktemp("videos"), num_videos=2, num_frames=14, size=(96, 80), seed=3,
                       rotation=90)


def _in_process(path, stride=1, max_frames=None, presize=None):
    with VideoReader(path) as r:
        frames = [(i, cpu_presize(f, presize) if presize else f, scoring.laplacian_variance(f))
                  for i, f in r.frames(stride=stride, max_frames=max_frames)]
        return r.info, frames, r.decoded


def _drain(src):
    got = []
    for i, frame, blur, slot in src:
        got.append((i, frame.copy(), blur))
        src.release(slot)
    return got


@pytest.mark.parametrize("stride,max_frames,chunk", [(1, None, 1), (3, 11, 1), (1, None, 4)])
def test_frames_blur_and_count_equal_decoding_here(videos, stride, max_frames, chunk, monkeypatch):
    """Every frame, blur score and the decoded count as decoding here; with ``chunk`` 4 the frames come
    at least four to a message, except where the ring runs out or the video ends."""
    replies = []
    real = decode_worker._Worker.reply
    monkeypatch.setattr(decode_worker._Worker, "reply", lambda self: replies.append(1) or real(self))
    for path in videos:
        info, want, decoded = _in_process(path, stride, max_frames)
        replies.clear()
        src = decode_worker.DecodedFrames(str(path), shape=(info.height, info.width, 3), slots=6, stride=stride,
                                          max_frames=max_frames, chunk=chunk)
        got = _drain(src)
        src.close()
        assert [g[0] for g in got] == [w[0] for w in want] and len(got) > 2
        assert all(np.array_equal(g[1], w[1]) and g[2] == w[2] for g, w in zip(got, want))
        assert src.decoded == decoded
        # chunk 1: whatever is ready goes out (a message may carry several frames whose blur scores came
        # in together); chunk 4: four or more to a message, but for the last ones
        assert len(replies) <= (len(got) + 1 if chunk == 1 else len(got) // 2 + 1)


def test_large_frames_come_presized_with_the_full_frames_blur(videos):
    """With a network input far smaller than the frame, the worker shrinks each frame as
    fastpath.cpu_presize does; the blur score is still the full frame's."""
    spec = InputSpec(min_size=24.0, max_size=40.0, mean=(0.0,) * 3, std=(1.0,) * 3, size_divisible=32)
    info, want, _ = _in_process(videos[1], presize=spec)
    assert want[0][1].shape[:2] == spec.resized(info.height, info.width) != (info.height, info.width)
    src = decode_worker.DecodedFrames(str(videos[1]), shape=want[0][1].shape, slots=4, presize=spec)
    got = _drain(src)
    src.close()
    assert len(got) == len(want) and all(np.array_equal(g[1], w[1]) and g[2] == w[2] for g, w in zip(got, want))


def test_a_full_ring_pauses_the_decoder_until_a_slot_comes_back(videos):
    info, _, _ = _in_process(videos[1])
    src = decode_worker.DecodedFrames(str(videos[1]), shape=(info.height, info.width, 3), slots=2)
    first, second = next(src), next(src)
    assert {first[3], second[3]} == {0, 1}
    assert not src.worker.conn.poll(0.5)  # no third frame while both slots are out
    src.release(first[3])
    third = next(src)
    assert third[0] == 2 and third[3] == first[3]
    kept = third[1].copy()
    src.close()  # a frame is still out: the ring stays mapped for it, and is unmapped at its release
    assert src.shm is not None and np.array_equal(third[1], kept)
    src.release(second[3])
    assert src.shm is not None
    src.release(third[3])
    assert src.shm is None
    # abandon: unmapped at once even with a frame out (a caller done with all of them, e.g. after an error)
    src = decode_worker.DecodedFrames(str(videos[1]), shape=(info.height, info.width, 3), slots=2)
    next(src)
    src.abandon()
    assert src.shm is None and src.done


def test_early_stop_bad_file_and_a_dead_worker(videos, tmp_path):
    info, want, _ = _in_process(videos[1])
    shape = (info.height, info.width, 3)
    src = decode_worker.DecodedFrames(str(videos[1]), shape=shape, slots=2)
    next(src)
    src.close()  # stopped early: the worker ends that video and takes the next
    pid = src.worker.proc.pid
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    src = decode_worker.DecodedFrames(str(bad), shape=shape, slots=2)
    with pytest.raises(VideoError, match="bad.mp4"):
        next(src)
    src.close()
    again = decode_worker.DecodedFrames(str(videos[1]), shape=shape, slots=4)
    assert [g[0] for g in _drain(again)] == [w[0] for w in want] and again.worker.proc.pid == pid
    again.close()
    # the worker dies mid-video: the consumer gets a VideoError, and the next video a new worker
    src = decode_worker.DecodedFrames(str(videos[1]), shape=shape, slots=1)
    next(src)
    os.kill(src.worker.proc.pid, signal.SIGKILL)
    with pytest.raises(VideoError, match="decode process died"):
        while True:
            _, _, _, slot = next(src)
            src.release(slot)
    src.close()
    fresh = decode_worker.DecodedFrames(str(videos[1]), shape=shape, slots=4)
    assert len(_drain(fresh)) == len(want) and fresh.worker.proc.pid != pid
    fresh.close()
