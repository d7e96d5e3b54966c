"""The ``yeay-nb`` command line.

Subcommands::

    yeay-nb run NOTEBOOK -f params/X.yaml [-p key value ...]   # one notebook via papermill
    yeay-nb pipeline -f params/X.yaml [-p key value ...]       # 01 -> 04 in order
    yeay-nb convert vg|ccp|synth ...                            # dataset conversion
    yeay-nb train -f params/X.yaml [-p key value ...]          # also under torchrun
    yeay-nb evaluate CKPT --coco-json J [--test-scale N]       # COCO AP of a checkpoint
    yeay-nb infer --input SRC --output-dir DIR --clothing-model CKPT ...

``-p`` keys are dotted params keys (``-p train.max_iter 100``); values are read as
YAML (numbers, true/false, lists). A user error prints one clear line and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import YeayError


def overrides_from_pairs(pairs: list[list[str]] | None) -> dict:
    """``[["train.max_iter", "100"], ...]`` -> ``{"train.max_iter": 100}``."""
    from .params import parse_override_value

    return {k: parse_override_value(v) for k, v in (pairs or [])}


def add_params_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The shared ``-f params.yaml -p key value`` options."""
    parser.add_argument("-f", "--params", dest="params_file", required=required, help="params YAML file")
    parser.add_argument("-p", "--param", dest="overrides", nargs=2, action="append", metavar=("KEY", "VALUE"),
                        help="override one params key (dotted, e.g. train.max_iter 100); repeatable")


def run_module(parser: argparse.ArgumentParser, argv: list[str] | None = None, *, error_prefix: str = "") -> int:
    """Entry point of ``yeay-nb`` and of each ``python -m yeay_nb.<step>`` module: parse ``argv``,
    run ``args.func``; a user error (:class:`YeayError`) prints one ``<error_prefix>error: ...``
    line and returns 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except YeayError as e:
        print(f"{error_prefix}error: {e}", file=sys.stderr)
        return 2


def _cmd_run(args: argparse.Namespace) -> int:
    from .runs import run_notebook

    r = run_notebook(args.notebook, args.params_file, overrides_from_pairs(args.overrides),
                     run_root=args.run_root, run_name=args.run_name)
    print(f"[yeay-nb] {r.notebook} done in {r.seconds:.0f} s\n  notebook: {r.executed}\n  report:   {r.html}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from .runs import run_pipeline

    results = run_pipeline(args.params_file, overrides_from_pairs(args.overrides), run_root=args.run_root,
                           run_name=args.run_name, notebooks=args.notebooks)
    print(f"[yeay-nb] pipeline done: {len(results)} notebooks in {results[0].run_dir if results else '-'}")
    return 0


def _cmd_convert_synth(args: argparse.Namespace) -> int:
    from .convert.step import run_convert
    from .params import load_params, params_from_dict

    if args.params_file:
        p = load_params(args.params_file, overrides_from_pairs(args.overrides))
    else:
        p = params_from_dict({"work_dir": str(Path(args.work_dir).resolve()),
                              "convert": {"source": "synth", "synth": {"num_images": args.num_images,
                                                                       "num_videos": args.num_videos,
                                                                       "seed": args.seed}}})
    p.convert.source = "synth"
    summary = run_convert(p)
    print(f"[yeay-nb] wrote {p.convert.coco_json} ({summary.get('num_images', '?')} images)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (each step's module registers its own subcommand)."""
    parser = argparse.ArgumentParser(prog="yeay-nb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute one notebook with papermill into runs/<run-name>/")
    run.add_argument("notebook", help="a notebook path or short name (01, convert, 01_convert)")
    add_params_args(run)
    run.add_argument("--run-root", default="runs")
    run.add_argument("--run-name", default=None, help="default: <run.name>-<UTC timestamp>")
    run.set_defaults(func=_cmd_run)

    pipe = sub.add_parser("pipeline", help="run the notebooks 01 -> 04 in order into one run folder")
    add_params_args(pipe)
    pipe.add_argument("--run-root", default="runs")
    pipe.add_argument("--run-name", default=None)
    pipe.add_argument("--notebooks", nargs="+", default=None, help="only these notebooks (short names)")
    pipe.set_defaults(func=_cmd_pipeline)

    convert = sub.add_parser("convert", help="convert raw annotations to a COCO json")
    csub = convert.add_subparsers(dest="source", required=True)
    from .convert import ccp, vg

    vg.add_cli(csub)
    ccp.add_cli(csub)
    syn = csub.add_parser("synth", help="generate the synthetic wardrobe and convert it")
    add_params_args(syn, required=False)
    syn.add_argument("--work-dir", default="work/synth-cli")
    syn.add_argument("--num-images", type=int, default=200)
    syn.add_argument("--num-videos", type=int, default=2)
    syn.add_argument("--seed", type=int, default=0)
    syn.set_defaults(func=_cmd_convert_synth)

    from . import evaluate, infer, train

    train.add_cli(sub)
    evaluate.add_cli(sub)
    infer.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``yeay-nb`` console script."""
    try:
        return run_module(build_parser(), argv, error_prefix="yeay-nb: ")
    except KeyboardInterrupt:
        print("yeay-nb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
