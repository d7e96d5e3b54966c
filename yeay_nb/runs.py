"""Headless notebook runs: papermill execution into run folders, plus HTML reports.

Usage::

    from yeay_nb.runs import run_notebook, run_pipeline
    run_notebook("notebooks/01_convert.ipynb", "params/demo.yaml", {"convert.limit": 50})
    run_pipeline("params/demo.yaml")            # 01 -> 04, the notebooks that exist

Each run writes ``runs/<run-name>/``: the executed notebook, an HTML report rendered
with nbconvert (also when a cell failed, so the error can be shared), and
``params.yaml`` with the resolved params that were used. Params are validated
before any notebook starts.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_text
from .errors import YeayError
from .params import load_params

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PIPELINE_ORDER = ("01_convert", "02_explore", "03_train", "04_infer")


class NotebookRunError(YeayError):
    """A notebook cell failed under papermill; names the notebook, the cell and the report."""


@dataclass
class RunResult:
    """Where one notebook run wrote its files."""

    notebook: str
    run_dir: Path
    executed: Path
    html: Path
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def find_notebook(name: str | Path) -> Path:
    """A notebook by path, or by short name: '01', '01_convert', 'convert'."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.exists():
        return p.resolve()
    stem = p.stem if p.suffix == ".ipynb" else str(name)
    for nb in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        if nb.stem == stem or nb.stem.split("_", 1)[0] == stem or nb.stem.split("_", 1)[-1] == stem:
            return nb
    known = ", ".join(nb.name for nb in sorted(NOTEBOOKS_DIR.glob("*.ipynb")))
    raise YeayError(f"notebook not found: {name} (known: {known})")


def pipeline_notebooks() -> list[Path]:
    """The pipeline's notebooks in order (those that exist)."""
    return [NOTEBOOKS_DIR / f"{stem}.ipynb" for stem in PIPELINE_ORDER if (NOTEBOOKS_DIR / f"{stem}.ipynb").exists()]


def make_run_dir(run_root: str | Path, run_name: str | None, params_name: str) -> Path:
    """A new folder ``run_root/<run_name>`` (default ``<params run.name>-<UTC timestamp>``)."""
    if not run_name:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_name = f"{params_name}-{stamp}"
    if not re.fullmatch(r"[\w.-]+", run_name):
        raise YeayError(f"run name may hold letters, digits, '.', '_' and '-' only: {run_name!r}")
    run_dir = Path(run_root) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def render_html(executed: Path, html: Path) -> Path:
    """Render an executed notebook to a standalone HTML report (written atomically)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    return write_text(html, body)


def _execute(notebook: Path, run_dir: Path, params_file: Path, overrides: dict, progress: bool) -> RunResult:
    import time

    import papermill as pm

    executed = run_dir / notebook.name
    html = executed.with_suffix(".html")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(executed),
            parameters={"params_file": str(params_file), "overrides": dict(overrides)},
            cwd=str(notebook.parent), kernel_name="python3", progress_bar=progress,
            report_mode=False,
        )
    except pm.PapermillExecutionError as e:
        render_html(executed, html)
        raise NotebookRunError(
            f"{notebook.name}: cell {e.exec_count} failed with {e.ename}: {e.evalue}\n"
            f"  executed notebook: {executed}\n  report: {html}") from None
    render_html(executed, html)
    return RunResult(notebook.name, run_dir, executed, html, time.perf_counter() - t0)


def run_notebook(notebook: str | Path, params_file: str | Path, overrides: dict | None = None, *,
                 run_root: str | Path = "runs", run_name: str | None = None,
                 progress: bool = True) -> RunResult:
    """Validate params, then execute one notebook with papermill into a run folder."""
    params_file = Path(params_file).resolve()
    p = load_params(params_file, overrides)  # fail fast, before any kernel starts
    nb = find_notebook(notebook)
    run_dir = make_run_dir(run_root, run_name, p.run.name)
    write_text(run_dir / "params.yaml", yaml.safe_dump(p.to_dict(), sort_keys=False))
    return _execute(nb, run_dir, params_file, overrides or {}, progress)


def run_pipeline(params_file: str | Path, overrides: dict | None = None, *, run_root: str | Path = "runs",
                 run_name: str | None = None, progress: bool = True,
                 notebooks: list[str] | None = None) -> list[RunResult]:
    """Run the notebooks 01 -> 04 (as they exist) in order into one run folder."""
    params_file = Path(params_file).resolve()
    p = load_params(params_file, overrides)
    nbs = [find_notebook(n) for n in notebooks] if notebooks else pipeline_notebooks()
    run_dir = make_run_dir(run_root, run_name, p.run.name)
    write_text(run_dir / "params.yaml", yaml.safe_dump(p.to_dict(), sort_keys=False))
    results = []
    for nb in nbs:
        print(f"[yeay-nb] running {nb.name} -> {run_dir}", flush=True)
        r = _execute(nb, run_dir, params_file, overrides or {}, progress)
        print(f"[yeay-nb] {nb.name} done in {r.seconds:.0f} s; report {r.html}", flush=True)
        results.append(r)
    return results
