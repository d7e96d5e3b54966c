"""The backbone's training forward and backward replayed as CUDA graphs, one graph per batch shape.

Why: on an H200 the training step of Mask R-CNN R50-FPN at 16 images is bound by the host, not the
GPU. A profile (benchmarks/RESULTS.md, 2026-11-29 third session) shows the forward dispatching
~1,750 kernels while the GPU idles ~70% of its host time; the ResNet + FPN part alone is a third of
the forward's host time and runs at 17-42% GPU use. Its op sequence is fixed for a given input
shape, so :func:`torch.cuda.make_graphed_callables` can record it (forward and backward) once and
replay it each step with one launch instead of ~300 (forward) and ~600 (backward). The RPN and ROI
heads stay eager: their shapes and their sampling change every step.

How it fits training:
- One graph per distinct padded batch shape (aspect grouping and multi-scale give a handful), up to
  ``max_shapes``; later new shapes run eagerly. All graphs share one memory pool: each step replays
  one graph's forward and then its backward before any other graph runs, so none overwrites memory
  another still needs (activations live only between a graph's forward and backward; each graph's
  own inputs, outputs and gradients are kept allocated). Measured, the pool still grows by ~6 GiB
  per graph for Mask R-CNN R50-FPN at 16 images of ~400 px on an H200 (10 graphs: 60 GiB reserved).
  So a new shape is captured only while the card keeps room for it: its free memory plus the
  allocator's cached, unused blocks, less the largest rise in reserved memory that any capture so far
  caused, must stay above ``MEMORY_HEADROOM`` of the card; otherwise that shape (and every later new
  one) runs eagerly, said once in the log. A cap meant for an H200 then degrades on a smaller card
  instead of running out of memory mid-run.
- Captured with ``capture_error_mode="thread_local"``: the DataLoader's pin-memory thread keeps
  calling CUDA (pinned allocations, event queries) during a capture taken mid-run, which the default
  "global" mode turns into a failed capture and a dead loader.
- The graphs read the parameters in place: the optimizer must update them in place (SGD does) and
  ``zero_grad(set_to_none=True)`` must drop the gradients each step (autograd may hand the graph's
  own gradient buffers to ``.grad``; zeroing them in place would double the next step's).
- Autocast's weight cache must be off for the forward (``torch.autocast(..., cache_enabled=False)``):
  a cached cast would be captured once and then go stale.
- Only in training with grad enabled on CUDA; evaluation and inference use the eager backbone. The
  model's modules and state dict are unchanged (the dispatcher is a plain attribute).
"""
from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from typing import Any, Callable, Optional

import torch
from torch import nn

MEMORY_HEADROOM = 0.10  # share of the card a new capture must leave free (the eager heads' peaks live there)


def cuda_memory(device: Any) -> tuple[int, int, int]:
    """(bytes the caching allocator could still hand out, the card's bytes, bytes it has reserved)."""
    free, total = torch.cuda.mem_get_info(device)
    reserved = torch.cuda.memory_reserved(device)
    return free + reserved - torch.cuda.memory_allocated(device), total, reserved


class _BackboneView(nn.Module):
    """The backbone as a module of its own (the same parameters, not a copy): ``make_graphed_callables``
    replaces the ``forward`` of the module it graphs, so each shape gets its own view and the backbone
    itself stays callable eagerly."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Any:
        return self.backbone(x)


@contextmanager
def _thread_local_capture(kwargs: dict):
    """Make ``make_graphed_callables`` capture in "thread_local" mode: by its own argument where this
    torch has it (2.14 does), else by handing it a ``torch.cuda.graph`` whose default is that mode (the
    lent GPU machine's torch 2.11 predates the argument)."""
    if "capture_error_mode" in inspect.signature(torch.cuda.make_graphed_callables).parameters:
        kwargs["capture_error_mode"] = "thread_local"
        yield
        return
    plain = torch.cuda.graph

    class graph(plain):  # noqa: N801 (stands in for torch.cuda.graph)
        def __init__(self, *args, capture_error_mode: str = "thread_local", **kw):
            super().__init__(*args, capture_error_mode=capture_error_mode, **kw)

    torch.cuda.graph = graph
    try:
        yield
    finally:
        torch.cuda.graph = plain


def capture_backbone(backbone: nn.Module, x: torch.Tensor, pool: Any) -> Callable:
    """The backbone's forward + backward at ``x``'s shape as a graphed callable (``x`` becomes its
    static input: the first replay needs no copy)."""
    params = inspect.signature(torch.cuda.make_graphed_callables).parameters
    kwargs: dict = {"num_warmup_iters": 3, "allow_unused_input": True}
    if "pool" in params:
        kwargs["pool"] = pool
    with _thread_local_capture(kwargs):
        return torch.cuda.make_graphed_callables(_BackboneView(backbone), (x,), **kwargs)


class GraphedBackbone:
    """Calls ``backbone`` through a CUDA graph per input shape in training (see the module's doc).

    ``capture(backbone, x, pool)`` makes a shape's graphed callable (tests pass a stand-in: the
    dispatch itself needs no GPU); ``log`` gets one line per capture."""

    def __init__(self, backbone: nn.Module, max_shapes: int = 8,
                 capture: Callable = capture_backbone, log: Optional[Callable[[str], Any]] = None,
                 memory: Optional[Callable[[Any], tuple[int, int, int]]] = None):
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")
        self.backbone = backbone
        self.max_shapes = max_shapes
        self.graphs: dict = {}
        self.eager_steps = 0  # training calls at a shape beyond max_shapes or beyond the memory
        self.capture_s = 0.0
        self.memory_capped = False  # a new shape found no room: no more captures
        self._capture = capture
        self._log = log
        self._memory = memory  # None: cuda_memory for CUDA inputs (tests pass a stand-in)
        self._growth = 0  # the largest rise in reserved bytes one capture caused so far
        self._pool = None

    def wanted(self, x: torch.Tensor) -> bool:
        """Whether this call may use a graph: training with grad enabled (a backward follows). The
        trainer installs the dispatcher on CUDA only."""
        return self.backbone.training and torch.is_grad_enabled() and not x.requires_grad

    def __call__(self, x: torch.Tensor) -> Any:
        if not self.wanted(x):
            return self.backbone(x)
        autocast = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
        key = (tuple(x.shape), x.dtype, str(x.device), autocast)
        graphed = self.graphs.get(key)
        if graphed is None:
            full = len(self.graphs) >= self.max_shapes or self.memory_capped
            before = None if full else self._memory_of(x)  # read only when a capture is possible
            if full or not self._room_for_another(before):
                self.eager_steps += 1
                return self.backbone(x)
            if self._pool is None and x.is_cuda:
                self._pool = torch.cuda.graph_pool_handle()
            t0 = time.perf_counter()
            graphed = self.graphs[key] = self._capture(self.backbone, x, self._pool)
            took = time.perf_counter() - t0
            self.capture_s += took
            after = self._memory_of(x) if before is not None else None
            if after is not None:
                self._growth = max(self._growth, after[2] - before[2])
            if self._log:
                mem = f", {after[2] / 2**30:.1f} GiB reserved" if after is not None else ""
                self._log(f"cuda graph {len(self.graphs)}/{self.max_shapes} of the backbone for "
                          f"{'x'.join(map(str, x.shape))} {str(autocast or x.dtype).replace('torch.', '')}: "
                          f"captured in {took:.1f} s{mem}")
        return graphed(x)

    def _memory_of(self, x: torch.Tensor) -> Optional[tuple[int, int, int]]:
        if self._memory is not None:
            return self._memory(x.device)
        return cuda_memory(x.device) if x.is_cuda else None

    def _room_for_another(self, memory: Optional[tuple[int, int, int]]) -> bool:
        """Whether, by the reading ``memory`` (None: no card to read), a capture as large as the largest
        so far leaves ``MEMORY_HEADROOM`` of the card free (the first capture has no measure yet and
        always goes ahead). Logs the first refusal."""
        if memory is None or not self.graphs:
            return True
        available, total, _ = memory
        if available - self._growth >= MEMORY_HEADROOM * total:
            return True
        self.memory_capped = True
        if self._log:
            self._log(f"cuda graphs: no room for another ({available / 2**30:.1f} GiB available of "
                      f"{total / 2**30:.1f}, a capture took up to {self._growth / 2**30:.1f}): "
                      f"{len(self.graphs)} shapes stay graphed, new shapes run eagerly "
                      "(a lower train.cuda_graph_shapes says so up front)")
        return False

    def summary(self) -> str:
        return (f"cuda graphs: {len(self.graphs)} backbone shapes captured in {self.capture_s:.1f} s"
                + (" (stopped by the memory)" if self.memory_capped else "")
                + f", {self.eager_steps} training steps at other shapes ran eagerly")

    def release(self) -> None:
        """Drop the graphs and their memory pool (after training; evaluation runs eagerly)."""
        self.graphs.clear()
        self._pool = None


def use_graphed_backbone(model: nn.Module, max_shapes: int, log: Optional[Callable[[str], Any]] = None,
                         capture: Callable = capture_backbone) -> GraphedBackbone:
    """Have ``model`` (a :mod:`yeay_nb.fasttrain` batched detector) call its backbone through CUDA
    graphs in training. A plain attribute, so neither the modules nor the state dict change."""
    if not hasattr(type(model), "uses_graphed_backbone"):
        raise TypeError(f"{type(model).__name__} does not dispatch its backbone through a graph "
                        "(needs yeay_nb.fasttrain's batched model: train.batched_heads true)")
    graphs = GraphedBackbone(model.backbone, max_shapes, capture=capture, log=log)
    model.__dict__["graphed_backbone"] = graphs
    return graphs


def drop_graphed_backbone(model: nn.Module) -> None:
    graphs = model.__dict__.pop("graphed_backbone", None)
    if graphs is not None:
        graphs.release()
