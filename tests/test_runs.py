"""Headless notebook runs: papermill into run folders, HTML reports, params validated first."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from yeay_nb.errors import ParamsError, YeayError
from yeay_nb.runs import NotebookRunError, find_notebook, run_notebook

ROOT = Path(__file__).resolve().parents[1]
CI_PARAMS = ROOT / "params" / "ci.yaml"


def test_find_notebook_by_short_names():
    nb = find_notebook("01")
    assert nb.name == "01_convert.ipynb"
    assert find_notebook("convert") == nb == find_notebook("01_convert") == find_notebook(str(nb))
    with pytest.raises(YeayError, match="notebook not found"):
        find_notebook("99")


def test_notebooks_are_committed_without_outputs_and_have_a_parameters_cell():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: exactly one 'parameters' cell"
        assert "params_file" in tagged[0].source and "overrides" in tagged[0].source


def test_bad_params_fail_before_any_work(tmp_path):
    with pytest.raises(ParamsError, match="train.nope"):
        run_notebook("01", CI_PARAMS, {"train.nope": 1}, run_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_cli_reports_a_params_error_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "yeay_nb.cli", "run", "01", "-f", str(CI_PARAMS),
                        "-p", "train.max_iter", "many", "--run-root", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "train.max_iter" in r.stderr and "expected an integer" in r.stderr
    assert "Traceback" not in r.stderr


def test_failing_cell_still_writes_the_report(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('params_file = ""\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise ValueError('boom in cell')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "fails.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(NotebookRunError, match="ValueError: boom in cell") as e:
        run_notebook(path, CI_PARAMS, {"work_dir": str(tmp_path / "w")}, run_root=tmp_path / "runs",
                     run_name="f", progress=False)
    html = tmp_path / "runs" / "f" / "fails.html"
    assert html.exists() and "boom in cell" in html.read_text()
    assert str(html) in str(e.value)


def test_notebook_01_runs_headless_with_ci_params(tmp_path):
    work = tmp_path / "work"
    r = subprocess.run([sys.executable, "-m", "yeay_nb.cli", "run", "01", "-f", str(CI_PARAMS),
                        "-p", "work_dir", str(work), "--run-root", str(tmp_path / "runs"), "--run-name", "t"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "t"
    assert (run_dir / "01_convert.ipynb").exists()
    html = (run_dir / "01_convert.html").read_text()
    assert "annotations per class" in html or "Classes" in html
    saved = (run_dir / "params.yaml").read_text()
    assert str(work) in saved
    coco = json.loads((work / "coco.json").read_text())
    assert coco["images"] and coco["annotations"]
    assert {im["split"] for im in coco["images"]} == {"train", "val"}
    executed = nbformat.read(str(run_dir / "01_convert.ipynb"), as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
