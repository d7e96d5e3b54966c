"""Train Faster/Mask R-CNN on a COCO json: one code path from a notebook to many GPUs.

Usage (notebook, CPU or one GPU)::

    from yeay_nb.params import load_params
    from yeay_nb.train import train
    result = train(load_params("params/demo.yaml", {"train.max_iter": 200}))
    result.final_checkpoint, result.eval["bbox"]["AP50"]

Usage (shell; N processes on one machine, DDP over NCCL, gloo on CPU)::

    torchrun --nproc_per_node=8 -m yeay_nb.train -f params/ccp.yaml -p train.max_iter 2000
    yeay-nb train -f params/demo.yaml -p train.base_lr 0.01

Schedule: ``base_lr``, ``max_iter``, ``steps``, ``warmup_iters`` and ``snapshot_iters`` are
written for a total batch of ``reference_batch`` images. With ``ims_per_gpu`` x world size
images per step the trainer scales lr by k = total / reference and divides the iteration
counts by k (Detectron's linear scaling rule), so one params file gives equivalent runs on
1, 2, 4 or 8 GPUs. The derived values are printed (``derived schedule: ...``) and recorded
in ``metrics.jsonl``.

Time budget: with ``time_budget_s`` the run stops (checkpoint, evaluation) when the
budget is spent, and the lr steps follow whichever comes first, the iteration or the
elapsed time: the decay at ``steps[i]`` happens at fraction ``steps[i] / max_iter`` of
the iterations *or* of the budget. A budget-bound run therefore still gets its lr drops.
``lr_policy: linear | cosine`` decays the lr smoothly to 0 over the same progress instead.

Restarting the same command resumes from ``output_dir/last_checkpoint``. ``stop_after_s`` ends
one invocation early (checkpoint, no evaluation) without changing the schedule, so a long run
can be made of several short jobs: rerun the same command until it evaluates.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import orjson
import torch
import torch.distributed as dist

from .atomic import atomic_open, write_text
from .errors import CheckpointError, YeayError
from .models import build_model, load_checkpoint, load_weights, model_config_from_params, save_checkpoint, unwrap

LAST_CHECKPOINT = "last_checkpoint"
FINAL_CHECKPOINT = "model_final.pt"
METRICS_FILE = "metrics.jsonl"


class NonFiniteLossError(YeayError):
    """A loss became NaN or infinite; the run stopped, earlier checkpoints are intact."""

    def __init__(self, iteration: int, term: str, value: float):
        self.iteration, self.term, self.value = iteration, term, value
        super().__init__(f"iteration {iteration}: loss term '{term}' is {value} (not finite); training stopped. "
                         "The last good checkpoint is untouched: lower train.base_lr, raise "
                         "train.warmup_iters or set train.clip_grad_norm, then rerun to resume.")


@dataclass
class Schedule:
    """The schedule actually run, after linear scaling for the total batch."""

    world_size: int
    total_batch: int
    scale: float
    lr: float
    max_iter: int
    steps: list[int]
    warmup_iters: int
    snapshot_iters: int
    time_budget_s: Optional[float] = None
    lr_policy: str = "step"

    def lr_factor(self, iteration: int, elapsed_s: float, warmup_factor: float, gamma: float) -> float:
        """Multiplier of ``lr`` at ``iteration`` (0-based) after ``elapsed_s`` seconds of training."""
        progress = iteration / self.max_iter
        if self.time_budget_s:
            progress = max(progress, elapsed_s / self.time_budget_s)
        if self.lr_policy == "linear":
            f = max(0.0, 1.0 - progress)
        elif self.lr_policy == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        else:
            f = gamma ** sum(1 for s in self.steps if progress >= s / self.max_iter)
        if iteration < self.warmup_iters:  # Detectron's linear warmup
            alpha = iteration / self.warmup_iters
            f *= warmup_factor * (1 - alpha) + alpha
        return f

    def line(self) -> str:
        return (f"derived schedule: world_size={self.world_size} total_batch={self.total_batch} "
                f"(x{self.scale:g} of reference) lr={self.lr:g} max_iter={self.max_iter} steps={self.steps} "
                f"warmup_iters={self.warmup_iters} snapshot_iters={self.snapshot_iters}"
                + (f" time_budget_s={self.time_budget_s:g}" if self.time_budget_s else "")
                + (f" lr_policy={self.lr_policy}" if self.lr_policy != "step" else ""))


def derive_schedule(t: Any, world_size: int) -> Schedule:
    """Scale a TrainParams schedule from ``reference_batch`` to ``ims_per_gpu * world_size``."""
    total = t.ims_per_gpu * world_size
    k = total / t.reference_batch

    def iters(n: int) -> int:
        return max(1, int(round(n / k)))

    return Schedule(world_size=world_size, total_batch=total, scale=k, lr=t.base_lr * k, max_iter=iters(t.max_iter),
                    steps=[iters(s) for s in t.steps], warmup_iters=int(round(t.warmup_iters / k)),
                    snapshot_iters=iters(t.snapshot_iters), time_budget_s=t.time_budget_s,
                    lr_policy=t.lr_policy)


@dataclass
class TrainResult:
    """What :func:`train` leaves behind."""

    output_dir: Path
    final_checkpoint: Path
    iterations: int
    schedule: Schedule
    stopped_by_budget: bool = False
    paused: bool = False  # ended by stop_after_s before the schedule's end: rerun to resume
    resumed_from: Optional[int] = None
    images_skipped: int = 0
    train_time_s: float = 0.0
    eval: Optional[dict] = None
    metrics_file: Optional[Path] = None
    classes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup(device_param: str) -> _Dist:
    """Read torchrun's environment; init the process group when there are several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_param == "auto":
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device_param)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    d = _Dist(rank, local, world, dev)
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        d.initialized_here = True
    return d


def _barrier(d: _Dist) -> None:
    if d.world_size > 1:
        dist.barrier()


# --------------------------------------------------------------------------- checkpoints
def find_last_checkpoint(output_dir: Path) -> Optional[Path]:
    """``last_checkpoint``'s target, else the newest ``model_*.pt`` (final beats numbered)."""
    marker = output_dir / LAST_CHECKPOINT
    if marker.is_file():
        p = output_dir / marker.read_text().strip()
        if p.is_file():
            return p
    if (output_dir / FINAL_CHECKPOINT).is_file():
        return output_dir / FINAL_CHECKPOINT
    numbered = sorted(output_dir.glob("model_[0-9]*.pt"))
    return numbered[-1] if numbered else None


def _save(path: Path, model, optimizer, classes, model_config, iteration, params, extra, ema=None) -> None:
    save_checkpoint(path, model=model, classes=classes, model_config=model_config, optimizer=optimizer,
                    scheduler=None, iteration=iteration, params=params, extra=extra, ema=ema)
    # the marker moves only after the checkpoint is complete: a kill between the two
    # leaves the marker on the previous (complete) checkpoint
    write_text(path.parent / LAST_CHECKPOINT, path.name)


def _trim_metrics(path: Path, iteration: int) -> None:
    """On resume, drop metric lines logged after the checkpoint we restart from."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_bytes().splitlines():
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut by a kill
        if rec.get("iteration", 0) <= iteration:
            keep.append(line)
    with atomic_open(path, "wb") as f:
        f.write(b"".join(k + b"\n" for k in keep))


# --------------------------------------------------------------------------- training
class _StepProfiler:
    """``train.profile_iters = [start, stop]``: torch.profiler from the end of iteration ``start``
    to the end of iteration ``stop`` (data loading, host work and, on CUDA, the kernels), written as
    ``profile_<start>-<stop>.json`` (open in chrome://tracing or ui.perfetto.dev) and ``.txt`` (the
    ops that took the most time) next to the checkpoints."""

    def __init__(self, window: Optional[list[int]], out: Path, device: torch.device, enabled: bool):
        self.window = tuple(window) if (window and enabled) else None
        self.out, self.device, self.prof, self.last = out, device, None, 0

    def at(self, iteration: int) -> None:
        """Call with the number of iterations done: before the loop and after every step."""
        if self.window is None:
            return
        start, stop = self.window
        self.last = iteration
        if iteration == start and self.prof is None:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
            self.prof = profile(activities=acts)
            self.prof.start()
        elif iteration >= stop and self.prof is not None:
            self.close()

    def close(self) -> None:
        if self.prof is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        prof, self.prof = self.prof, None
        prof.stop()
        start, stop = self.window[0], min(self.window[1], self.last)  # the run may end inside the window
        self.window = None
        base = self.out / f"profile_{start}-{stop}"
        tmp = base.with_suffix(".json.tmp")
        prof.export_chrome_trace(str(tmp))
        os.replace(tmp, base.with_suffix(".json"))
        key = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        write_text(base.with_suffix(".txt"), prof.key_averages().table(sort_by=key, row_limit=40))
        print(f"profile of iterations {start + 1}-{stop}: {base}.json / .txt", flush=True)


def _amp_context(amp: str, device: torch.device, cache: bool = True):
    """bf16 autocast per ``amp``; ``cache=False`` for CUDA graphs (a cached weight cast would be
    captured once and then go stale)."""
    if device.type == "cuda" and amp in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    if amp == "bf16" and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def train(params: Any, *, images_dir: Optional[str | Path] = None, progress: bool = True) -> TrainResult:
    """Train (or resume) per ``params.train``, save ``model_final.pt`` and evaluate unless ``skip_test``.

    Usage::

        result = train(load_params("params/demo.yaml"))

    Works unchanged under ``torchrun`` (one process per GPU). Raises
    :class:`NonFiniteLossError` on a NaN/inf loss, :class:`~yeay_nb.errors.CheckpointError`
    when the resumed checkpoint's classes differ from the json's.
    """
    from tqdm.auto import tqdm

    from .data import CocoDetectionDataset, to_device, train_loader

    t = params.train
    d = _setup(t.device)
    if d.device.type == "cpu":
        # denormal floats appear in freshly initialised nets and slow CPU kernels ~5x;
        # fewer threads avoid OpenMP spin-waiting on a shared machine
        torch.set_flush_denormal(True)
        if t.cpu_threads:
            torch.set_num_threads(t.cpu_threads)
    try:
        out = Path(t.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        seed = params.run.seed
        torch.manual_seed(seed + d.rank)
        import random as _random
        _random.seed(seed + d.rank)  # the dataset's horizontal flip

        dataset = CocoDetectionDataset(t.coco_json, "train", images_dir=images_dir, masks=t.model == "maskrcnn",
                                       hflip=t.hflip, drop_empty=True, copy_paste=t.copy_paste_prob,
                                       copy_paste_exclude=t.copy_paste_exclude,
                                       copy_paste_unoccluded=t.copy_paste_unoccluded,
                                       copy_paste_rare_threshold=t.copy_paste_rare_threshold,
                                       color_jitter=t.color_jitter)
        classes = dataset.classes
        cfg = model_config_from_params(t, len(classes))
        sched = derive_schedule(t, d.world_size)
        model = build_model(cfg).to(d.device)
        if not t.batched_heads:
            from .fasttrain import uninstall

            uninstall(model)
        if t.class_logit_adjust:
            from .fasttrain import logit_adjustment, set_logit_adjustment

            counts = dataset.class_counts()
            offsets = logit_adjustment(counts, t.class_logit_adjust)
            set_logit_adjustment(model, offsets)
            if d.main:
                rare = min(range(1, len(counts)), key=lambda c: (counts[c], c))
                print(f"logit adjustment (tau {t.class_logit_adjust:g}): rarest class {classes[rare]!r} "
                      f"({counts[rare]} training boxes) {float(offsets[rare]):+.2f} on its training logit", flush=True)
        if not t.low_precision_group_norm:
            from .models import use_low_precision_group_norm

            use_low_precision_group_norm(model, False)
        params_dict = params.to_dict()

        resume_path = find_last_checkpoint(out)
        start_iter, elapsed_before, resumed_from = 0, 0.0, None
        state = None
        if resume_path is not None:
            state = load_checkpoint(resume_path)
            if list(state["classes"]) != list(classes):
                raise CheckpointError(
                    f"cannot resume from {resume_path}: its classes ({len(state['classes'])}: "
                    f"{state['classes'][:5]}...) differ from {t.coco_json} ({len(classes)}: {classes[:5]}...). "
                    f"Use another train.output_dir, or set train.weights to {resume_path} to fine-tune.")
            for key in ("arch", "backbone", "norm"):
                if state["model_config"].get(key) != cfg[key]:
                    raise CheckpointError(f"cannot resume from {resume_path}: model {key} is "
                                          f"{state['model_config'].get(key)!r} there, {cfg[key]!r} in the params")
            unwrap(model).load_state_dict(state["model"])
            start_iter = int(state.get("iteration") or 0)
            elapsed_before = float((state.get("extra") or {}).get("train_time_s", 0.0))
            resumed_from = start_iter
        else:
            report = load_weights(model, t.weights, cfg)
            if d.main and t.weights != "none":
                print(f"weights {report['weights']}: loaded {report['loaded']} tensors, "
                      f"re-initialised {len(report.get('skipped', []))} with other shapes", flush=True)
        ema = None
        if t.ema_decay:
            from .ema import WeightEma

            ema = WeightEma(model, t.ema_decay)
            if state is not None and state.get("ema"):
                ema.load_state_dict(state["ema"], (state.get("extra") or {}).get("ema_updates", start_iter))
            elif state is not None and d.main:
                print(f"{resume_path} has no weight average: train.ema_decay starts one from its weights", flush=True)

        if d.world_size > 1:
            ddp_kw = {"device_ids": [d.device.index]} if d.device.type == "cuda" else {}
            model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kw)
        graphs = None
        if t.cuda_graph_shapes and d.device.type == "cuda":
            if d.world_size > 1:
                if d.main:
                    print("train.cuda_graph_shapes: ignored under DDP (one process only for now)", flush=True)
            else:
                from .cudagraphs import use_graphed_backbone

                graphs = use_graphed_backbone(model, t.cuda_graph_shapes, log=lambda m: print(m, flush=True))
        elif t.cuda_graph_shapes and d.main:
            print(f"train.cuda_graph_shapes: ignored on {d.device.type} (CUDA only)", flush=True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=sched.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        if state is not None and state.get("optimizer"):
            optimizer.load_state_dict(state["optimizer"])
        state = None  # free the host copy

        metrics_path = out / METRICS_FILE
        if d.main:
            print(sched.line(), flush=True)
            if resumed_from is not None:
                print(f"resuming from {resume_path} at iteration {start_iter}", flush=True)
                _trim_metrics(metrics_path, start_iter)
            with open(metrics_path, "ab") as f:
                f.write(orjson.dumps({"event": "derived schedule", "iteration": start_iter, "time": time.time(),
                                      **dataclasses.asdict(sched)}) + b"\n")

        extra = lambda: {"train_time_s": elapsed_before + (time.perf_counter() - t0),  # noqa: E731
                         "schedule": dataclasses.asdict(sched), "world_size": d.world_size,
                         **({"ema_updates": ema.updates, "ema_decay": ema.decay} if ema else {})}
        save = lambda path, it: _save(path, model, optimizer, classes, cfg, it, params_dict, extra(),  # noqa: E731
                                      ema.module if ema else None)

        it = start_iter
        skipped = 0
        stopped_by_budget = paused = False
        t0 = time.perf_counter()
        if it < sched.max_iter and not (sched.time_budget_s and elapsed_before >= sched.time_budget_s):
            factors = dataset.repeat_factors(t.repeat_factor_threshold) if t.repeat_factor_threshold else None
            if factors is not None and d.main and start_iter == 0:
                print(f"repeat-factor sampling (threshold {t.repeat_factor_threshold:g}): "
                      f"{sum(f > 1 for f in factors)} of {len(factors)} images repeated, "
                      f"{sum(factors) / len(factors):.2f}x images per epoch, largest factor {max(factors):.2f}",
                      flush=True)
            loader = train_loader(dataset, t.ims_per_gpu, num_workers=t.num_workers, rank=d.rank,
                                  world_size=d.world_size, seed=seed + start_iter,
                                  pin_memory=d.device.type == "cuda", repeat_factors=factors)
            model.train()
            bar = tqdm(total=sched.max_iter, initial=it, desc="train", disable=not (progress and d.main),
                       dynamic_ncols=True)
            window_imgs, window_t = 0, time.perf_counter()
            # seconds the loop waited for the loader (detectron2's data_time): near 0 when the
            # workers keep up; a large share of the window means more workers or cheaper transforms
            window_wait, window_iters, step_end = 0.0, 0, time.perf_counter()
            last_batch = None
            profiler = _StepProfiler(t.profile_iters, out, d.device, enabled=d.main)
            profiler.at(it)
            for images, targets, n_failed in loader:
                window_wait += time.perf_counter() - step_end
                skipped += n_failed
                if not images:
                    if last_batch is None:
                        continue
                    # a whole batch failed to decode (counted above): repeat the previous one so
                    # that every DDP rank still runs the same number of steps
                    images, targets = last_batch
                last_batch = images, targets
                elapsed = elapsed_before + (time.perf_counter() - t0)
                lr = sched.lr * sched.lr_factor(it, elapsed, t.warmup_factor, t.gamma)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                images, targets = to_device(images, targets, d.device)
                with _amp_context(t.amp, d.device, cache=graphs is None):
                    losses = model(images, targets)
                loss = sum(losses.values())
                # one host sync per step: agree across ranks on "finite" and on the clock,
                # so every rank stops at the same iteration (otherwise DDP would hang)
                flags = torch.stack([(~torch.isfinite(loss.detach())).float(),
                                     torch.tensor(elapsed, device=loss.device, dtype=torch.float32)])
                if d.world_size > 1:
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                bad, elapsed_all = flags.tolist()
                if bad:
                    vals = {k: float(v.detach()) for k, v in losses.items()}
                    term = next((k for k, v in vals.items() if not math.isfinite(v)), "loss (another rank)")
                    raise NonFiniteLossError(it + 1, term, vals.get(term, float("nan")))
                # set_to_none: with CUDA graphs .grad may be the graph's own buffer (zeroing it in
                # place would double the next step's gradient; yeay_nb.cudagraphs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if t.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, t.clip_grad_norm)
                optimizer.step()
                if ema is not None:
                    ema.update(unwrap(model))
                it += 1
                profiler.at(it)
                window_imgs += len(images) * d.world_size
                window_iters += 1
                bar.update(1)
                if it % t.log_every == 0 or it == sched.max_iter or it == start_iter + 1:
                    vals = {k: float(v.detach()) for k, v in losses.items()}
                    if d.world_size > 1:
                        red = torch.tensor(list(vals.values()), device=loss.device)
                        dist.all_reduce(red)
                        vals = dict(zip(vals, (red / d.world_size).tolist()))
                    now = time.perf_counter()
                    ips = window_imgs / max(now - window_t, 1e-9)
                    data_s = window_wait / max(window_iters, 1)
                    data_share = min(window_wait / max(now - window_t, 1e-9), 1.0)
                    window_imgs, window_t, window_wait, window_iters = 0, now, 0.0, 0
                    total = sum(vals.values())
                    bar.set_postfix(loss=f"{total:.3f}", img_s=f"{ips:.1f}", lr=f"{lr:.2g}",
                                    data=f"{data_share:.0%}")  # share of time waiting for the loader
                    if d.main:
                        rec = {"iteration": it, "lr": lr, "loss": total, **vals, "img_per_s": ips,
                               "data_s": data_s, "data_share": data_share,
                               "time": elapsed_before + (now - t0), "images_skipped": skipped}
                        with open(metrics_path, "ab") as f:
                            f.write(orjson.dumps(rec) + b"\n")
                if it >= sched.max_iter:
                    break
                if sched.time_budget_s and elapsed_all >= sched.time_budget_s:
                    stopped_by_budget = True
                    break
                if t.stop_after_s and elapsed_all - elapsed_before >= t.stop_after_s:
                    paused = True
                    break
                if it % sched.snapshot_iters == 0:
                    if d.main:
                        save(out / f"model_{it:07d}.pt", it)
                    _barrier(d)
                step_end = time.perf_counter()
            bar.close()
            profiler.close()  # a window the run did not reach the end of
            del loader
        if graphs is not None:  # evaluation runs eagerly: give the graphs' memory back first
            from .cudagraphs import drop_graphed_backbone

            if d.main:
                print(graphs.summary(), flush=True)
            drop_graphed_backbone(model)
        train_time = elapsed_before + (time.perf_counter() - t0)
        if paused and (it >= sched.max_iter or (sched.time_budget_s and train_time >= sched.time_budget_s)):
            # the pause came with the schedule's end: finish (and evaluate) now, not on a rerun
            paused, stopped_by_budget = False, it < sched.max_iter
        if d.world_size > 1:  # the ranks' clocks differ: rank 0 decides, so all evaluate (barrier) or none
            flags = torch.tensor([float(paused), float(stopped_by_budget)], device=d.device)
            dist.broadcast(flags, 0)
            paused, stopped_by_budget = (bool(v) for v in flags.tolist())
        final = out / FINAL_CHECKPOINT
        if d.main and (it != start_iter or not final.is_file()):
            save(final, it)
        _barrier(d)
        if d.main and stopped_by_budget:
            print(f"time budget {sched.time_budget_s:g}s spent at iteration {it}/{sched.max_iter}", flush=True)
        if skipped and d.main:
            print(f"{skipped} images failed to decode and were skipped", flush=True)
        if d.main and paused:
            print(f"stop_after_s={t.stop_after_s:g}s reached at iteration {it}/{sched.max_iter} "
                  f"({train_time:.0f}s trained in all): run the same command again to resume", flush=True)

        result = TrainResult(output_dir=out, final_checkpoint=final, iterations=it, schedule=sched,
                             stopped_by_budget=stopped_by_budget, paused=paused, resumed_from=resumed_from,
                             images_skipped=skipped, train_time_s=train_time, metrics_file=metrics_path,
                             classes=classes)
        if not t.skip_test and not paused:
            if d.main:
                from .evaluate import evaluate

                # the weight average where there is one: what inference loads (models.inference_weights)
                result.eval = evaluate(ema.module if ema else unwrap(model), t.coco_json, split="val", output_dir=out,
                                       device=d.device, images_dir=images_dir, progress=progress,
                                       num_workers=t.num_workers, flip=t.test_flip)
            _barrier(d)
        return result
    finally:
        if d.initialized_here:
            dist.destroy_process_group()


# --------------------------------------------------------------------------- notebook helpers
def read_metrics(path: str | Path) -> list[dict]:
    """Training-step records of ``metrics.jsonl`` (lines cut by a kill are skipped)."""
    rows = []
    for line in Path(path).read_bytes().splitlines():
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if "loss" in rec:
            rows.append(rec)
    return rows


def loss_figure(path: str | Path):
    """A matplotlib figure: every loss term and the lr against the iteration."""
    from matplotlib.figure import Figure

    rows = read_metrics(path)
    fig = Figure(figsize=(10, 3.5))
    ax, ax_lr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    its = [r["iteration"] for r in rows]
    terms = sorted({k for r in rows for k in r if k.startswith("loss")})
    for k in terms:
        ax.plot(its, [r.get(k, float("nan")) for r in rows], label=k, lw=2 if k == "loss" else 1)
    ax.set_xlabel("iteration"), ax.set_ylabel("loss"), ax.set_yscale("log"), ax.legend(fontsize=7)
    ax_lr.plot(its, [r["lr"] for r in rows])
    ax_lr.set_xlabel("iteration"), ax_lr.set_ylabel("learning rate")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- CLI
def _overrides(pairs: Optional[list[list[str]]]) -> dict:
    from .params import parse_override_value

    return {k: parse_override_value(v) for k, v in (pairs or [])}


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("-f", "--params", required=True, help="params YAML file")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a param, e.g. -p train.max_iter 100 (repeatable)")
    p.add_argument("--images-dir", default=None, help="folder of the json's relative file_name entries")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Entry point shared by ``yeay-nb train`` and ``python -m yeay_nb.train``; returns the exit status."""
    from .params import load_params

    params = load_params(args.params, _overrides(args.param))
    result = train(params, images_dir=args.images_dir, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"final checkpoint: {result.final_checkpoint} (iteration {result.iterations})")
        if result.eval:
            from .evaluate import ap_table
            print(ap_table(result.eval))
    return 0


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``yeay-nb train -f params/X.yaml [-p key value ...]``."""
    p = subparsers.add_parser("train", help="train Faster/Mask R-CNN on the COCO json (resumes)",
                              description=__doc__.split("\n\n")[0])
    return _configure(p)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m yeay_nb.train`` (also under torchrun)."""
    from .cli import run_module

    return run_module(_configure(argparse.ArgumentParser(prog="python -m yeay_nb.train")), argv)


if __name__ == "__main__":
    sys.exit(main())
