"""Decoding in a process of its own; frames come back through shared memory.

Why: on a GPU the video path keeps several Python threads busy (a thread per model, the batch
thread, the main thread collecting results). A decode thread beside them has to win the GIL back
several times a frame; measured on an H200 the loop still waited 0.30-0.40 s of ~1.7-2.0 s for
decoded frames with a 0.5 ms switch interval (0.75 s with Python's default 5 ms), while decoding
alone runs at ~500 frames/s (benchmarks/RESULTS.md, 2026-11-29 fifth session). Here one long-lived
process (started on first use, reused for every later video) decodes, rotates, shrinks 4K/1080p
frames to the network size and scores blur (a few threads: OpenCV frees the GIL), and writes each
frame into a slot of a shared-memory ring. The main process reads the frame in place and hands
the slot back once the models are done with it; a full ring pauses the decoder (back-pressure).

The worker is a plain ``python -m yeay_nb.decode_worker`` child talking over a socket pair
(``multiprocessing.connection``), not a ``multiprocessing`` spawn: spawn re-runs the user's main
script in the child, which breaks scripts without an ``if __name__ == "__main__"`` guard.

Only the frames the models take travel (so not for ``output_video``, which draws on full frames:
the caller keeps its decode thread there). Same frames, blur scores and decoded count as
:class:`~yeay_nb.video.VideoReader` in the main process (tested).
"""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import sys
import threading
from typing import Any

import numpy as np

from .errors import VideoError

BLUR_THREADS = 3  # blur scores in the worker: ~2 ms a 960x540 frame, as long as decoding it
_POLL_S = 0.5  # how often a wait checks that the worker is still alive
_START_S = 60.0  # the worker's first reply (imports) must come within this

_WORKER = None
_WORKER_LOCK = threading.Lock()
_SEQ = itertools.count(1)


class WorkerUnavailable(RuntimeError):
    """The decode process could not be started (the caller decodes in a thread instead)."""


# --------------------------------------------------------------------------- the worker process
def _serve(conn) -> None:
    """The worker: one video per ("video", ...) message until EOF or ``None``."""
    backlog: collections.deque = collections.deque()  # messages read while waiting for something else
    conn.send(("ready", 0))
    blur_pool = concurrent.futures.ThreadPoolExecutor(BLUR_THREADS, thread_name_prefix="yeay-blur")
    while True:
        try:
            msg = backlog.popleft() if backlog else conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        if msg[0] == "video":  # anything else here is about an earlier video ("free", "stop"): dropped
            if not _one_video(conn, msg, backlog, blur_pool):
                return


def _one_video(conn, msg: tuple, backlog: collections.deque, blur_pool) -> bool:
    """Decodes one video into the ring; False when the parent has gone."""
    from multiprocessing import shared_memory

    from . import scoring
    from .fastpath import cpu_presize
    from .video import VideoReader

    _, seq, path, rotate, stride, max_frames, presize, shm_name, shape, slots, chunk = msg
    free, state = list(range(slots)), {"stop": False, "gone": False}

    def handle(m) -> None:
        if m is None:
            state["gone"] = state["stop"] = True
        elif m[0] == "free" and m[1] == seq:
            free.append(m[2])
        elif m[0] == "stop" and m[1] == seq:
            state["stop"] = True
        elif m[0] == "video":
            backlog.append(m)

    pending: collections.deque = collections.deque()  # (frame index, slot, blur future), in frame order
    ready: list = []  # (frame index, slot, blur score), in order, not yet sent

    def flush(keep: int) -> None:
        """Frames go out in order, each once its blur score is in, ``chunk`` to a message (one GIL
        round trip in the consumer per message, not per frame); all of them when ``keep`` is 0."""
        nonlocal ready
        while len(pending) > keep or (pending and pending[0][2].done()):
            i, slot, blur = pending.popleft()
            ready.append((i, slot, blur.result()))
        if ready and (len(ready) >= chunk or keep == 0):
            conn.send(("frames", seq, ready))
            ready = []

    def take_slot() -> int | None:
        try:
            while conn.poll():  # a stop may be waiting even while slots are free
                handle(conn.recv())
            if not free:  # the frames held back for their blur scores must go out before waiting for a slot
                flush(keep=0)
            while not free and not state["stop"]:
                handle(conn.recv())
        except EOFError:
            state["gone"] = state["stop"] = True
        return None if state["stop"] else free.pop()

    shm = buf = None
    try:
        shm = shared_memory.SharedMemory(name=shm_name)
        buf = np.ndarray((slots, *shape), np.uint8, shm.buf)

        with VideoReader(path, rotate=rotate) as reader:
            for i, rgb in reader.frames(stride=stride, max_frames=max_frames):
                slot = take_slot()
                if slot is None:
                    break
                net = cpu_presize(rgb, presize) if presize is not None else rgb
                if net.shape != tuple(shape):
                    raise VideoError(f"{path}: frame {i} is {net.shape[1]}x{net.shape[0]}, the video's first "
                                     f"frames {shape[1]}x{shape[0]}: sizes that change mid-stream are not supported")
                buf[slot] = net
                pending.append((i, slot, blur_pool.submit(scoring.laplacian_variance, rgb)))
                flush(keep=2 * BLUR_THREADS)
            if not state["stop"]:
                flush(keep=0)
            decoded = reader.decoded
        conn.send(("end", seq, decoded))
    except (EOFError, BrokenPipeError):
        return False
    except BaseException as e:  # handed to the parent, which raises it
        for _, _, blur in pending:
            blur.cancel()
        try:
            conn.send(("error", seq, _portable(e)))
        except (EOFError, BrokenPipeError):
            return False
    finally:
        del buf
        if shm is not None:
            shm.close()
    return not state["gone"]


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (VideoError does), else a VideoError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return VideoError(f"{type(e).__name__}: {e}")


def _child_main(fd: int) -> None:
    from multiprocessing import resource_tracker
    from multiprocessing.connection import Connection

    # the parent owns (and unlinks) every ring; Python < 3.13 would otherwise track the rings this
    # process attaches to and "clean up" (unlink, warn) at its exit (python/cpython#82300)
    resource_tracker.register = lambda name, rtype: None
    _serve(Connection(fd))


# --------------------------------------------------------------------------- the parent's side
class _Worker:
    """The parent's handle of the decode process: a ``python -m yeay_nb.decode_worker FD`` child."""

    def __init__(self) -> None:
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)  # the child finds this yeay_nb even when the parent only had it on sys.path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "yeay_nb.decode_worker", str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        except OSError as e:
            mine.close()
            raise WorkerUnavailable(f"cannot start the decode process: {e}") from None
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        if not self.conn.poll(_START_S) or self.proc.poll() is not None:
            self.shutdown()
            raise WorkerUnavailable(f"the decode process did not start (exit code {self.proc.poll()})")
        self.conn.recv()  # "ready"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def reply(self) -> tuple:
        while True:
            try:
                if self.conn.poll(_POLL_S):
                    return self.conn.recv()
            except (EOFError, OSError):
                pass
            if not self.alive():
                raise VideoError(f"the decode process died (exit code {self.proc.poll()})") from None

    def send(self, msg) -> None:
        try:
            self.conn.send(msg)
        except OSError:
            raise VideoError(f"the decode process died (exit code {self.proc.poll()})") from None

    def shutdown(self) -> None:
        try:
            self.conn.close()
        finally:
            try:
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()


def _worker() -> _Worker:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None or not _WORKER.alive():
            _WORKER = _Worker()
        return _WORKER


def shared_memory_room() -> int:
    """Bytes free for shared memory (``/dev/shm``; containers often give it only 64 MiB): a ring
    larger than this would fail on a write (SIGBUS), not on creation."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class DecodedFrames:
    """Yields ``(frame_index, frame, blur, slot)`` for the video at ``path``, decoded by the worker.

    ``frame`` (``shape``: rows, columns, 3: what :func:`~yeay_nb.fastpath.cpu_presize` makes of each
    upright frame with ``presize``) lies in shared memory and stays valid until ``release(slot)``;
    the decoder holds at most ``slots`` frames out and sends them ``chunk`` to a message. ``blur`` is
    :func:`~yeay_nb.scoring.laplacian_variance` of the full frame. ``decoded`` is the decoded frame
    count once the loop has ended. ``close()`` (also early: stops the decoding) frees the ring once
    the worker has let go of it; frames still referenced keep their memory until dropped.
    Raises :class:`WorkerUnavailable` if the worker cannot be started."""

    def __init__(self, path: str, *, shape, slots: int, rotate: Any = "auto", stride: int = 1,
                 max_frames: int | None = None, presize: Any = None, chunk: int = 1) -> None:
        from multiprocessing import shared_memory

        self.worker = _worker()
        self.shape = tuple(int(v) for v in shape)
        self.seq = next(_SEQ)
        self.decoded: int | None = None
        self.done = False
        self.out: set = set()  # slots handed out and not yet released: the ring stays mapped for them
        self.received: collections.deque = collections.deque()  # frames the worker sent, not yet handed out
        self.closing = False
        self.shm = shared_memory.SharedMemory(create=True, size=slots * int(np.prod(self.shape)))
        self.buf = np.ndarray((slots, *self.shape), np.uint8, self.shm.buf)
        self.worker.send(("video", self.seq, str(path), rotate, stride, max_frames, presize, self.shm.name,
                          self.shape, slots, max(1, int(chunk))))

    def __iter__(self) -> "DecodedFrames":
        return self

    def __next__(self) -> tuple[int, np.ndarray, float, int]:
        while not self.received and not self.done:
            try:
                kind, seq, *rest = self.worker.reply()
            except VideoError:
                self.done = True
                raise
            if seq != self.seq:
                continue  # a late reply about an earlier video that stopped early
            if kind == "frames":
                self.received.extend(rest[0])
                continue
            self.done = True
            if kind == "error":
                self.received.clear()  # frames before the error are dropped with the video
                raise rest[0]
            self.decoded = rest[0]
        if not self.received:
            raise StopIteration
        i, slot, blur = self.received.popleft()
        self.out.add(slot)
        return i, self.buf[slot], blur, slot

    def release(self, slot: int) -> None:
        """The frame in ``slot`` is no longer read: the worker may write it again."""
        self.out.discard(slot)
        if not self.done:
            self.worker.send(("free", self.seq, slot))
        elif self.closing and not self.out:
            self._unmap()

    def close(self) -> None:
        """Stops the worker's decoding of this video (if still going) and frees the ring, at once or,
        if frames are still out, when the last of them is released (numpy views do not keep a
        shared-memory mapping alive: unmapping under them would crash their readers)."""
        if not self.done:
            try:
                self.worker.send(("stop", self.seq))
                while not self.done:  # the worker ends this video with "end" or "error"
                    kind, seq, *_ = self.worker.reply()
                    self.done = seq == self.seq and kind in ("end", "error")
            except VideoError:  # the worker died: nothing holds the ring any more
                self.done = True
        if not self.closing:
            self.closing = True
            self.shm.unlink()  # the name goes now; the mapping below
        if not self.out:
            self._unmap()

    def abandon(self) -> None:
        """:meth:`close`, and the ring unmapped even if frames are still out: for a caller that will
        read none of them again (e.g. after an error, once its models have finished)."""
        self.close()
        self.out.clear()
        self._unmap()

    def _unmap(self) -> None:
        if self.shm is not None:
            self.buf = None
            self.shm.close()
            self.shm = None


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
