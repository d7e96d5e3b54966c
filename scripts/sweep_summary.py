"""Summarise CCP sweep runs (``scripts/device_sweep_ccp.sh``) and propose the next round.

Each run folder holds ``eval.json``, ``metrics.jsonl`` and ``overrides.txt`` (its "-p key value"
words). Printed per run: iterations, median img/s, person mask AP, person box AP and the mean
clothing box AP (every class with validation boxes except ``person``), and the gain over the
run named ``base`` (the mean of ``base`` and ``base_s1`` where both exist; their difference is
the noise that a lever must beat).

    python scripts/sweep_summary.py /tmp/ccpruns                 # table
    python scripts/sweep_summary.py /tmp/ccpruns --next 4        # 4 "name|overrides" specs
    python scripts/sweep_summary.py /work/.device/1/sweep.tgz /work/.device/3/sweep.tgz

Several folders or ``sweep.tgz`` files (what each call of device_sweep_ccp.sh brings back) are read
as one sweep (run names must differ between them). Without a run named
``base`` the table is still printed, without gains (a later call on another machine has none);
``--next`` needs it.

``--next``: the single-lever runs (names without "+") that beat the base by more than the
noise, combined greedily best first (a lever that sets a key already set is skipped), then the
best two, then a replicate of the combination with another seed. Numbers only choose what to
run; the decision what to keep is made by reading the table.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import tarfile
import tempfile
from pathlib import Path


def run_summary(d: Path) -> dict | None:
    try:
        ev = json.loads((d / "eval.json").read_text())
    except (OSError, ValueError):
        return None
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()] \
        if (d / "metrics.jsonl").is_file() else []
    per = ev["bbox"]["per_class"]
    valid = {k: v for k, v in per.items() if k != "person" and v.get("AP") is not None
             and not math.isnan(v["AP"]) and v["AP"] >= 0}
    clothing = [v["AP"] for v in valid.values()]
    # the bar averages "16 clothing groups" (not defined anywhere we have); one reading: the
    # 16 clothing classes with the most validation boxes (eval.json's num_gt, written since 2026-11-27)
    frequent = sorted(valid.values(), key=lambda v: -v.get("num_gt", 0))[:16]
    has_counts = all("num_gt" in v for v in valid.values()) and valid
    ips = [r["img_per_s"] for r in rows if r.get("img_per_s")]
    overrides = (d / "overrides.txt").read_text().strip() if (d / "overrides.txt").is_file() else ""
    return {"name": d.name, "iters": max((r.get("iteration", 0) for r in rows), default=0),
            "img_per_s": round(statistics.median(ips), 1) if ips else None,
            "person_mask_ap": ev.get("segm", {}).get("per_class", {}).get("person", {}).get("AP"),
            "person_box_ap": per.get("person", {}).get("AP"),
            "clothing_box_ap": sum(clothing) / len(clothing) if clothing else None,
            "clothing_classes": len(clothing),
            "clothing_box_ap_top16": sum(v["AP"] for v in frequent) / len(frequent) if has_counts else None,
            "val_images": ev.get("num_images"), "overrides": overrides}


def _folder(root: Path, tmp: Path) -> Path:
    """``root`` itself, or a sweep.tgz unpacked below ``tmp``."""
    if root.is_dir():
        return root
    if not tarfile.is_tarfile(root):
        raise SystemExit(f"{root}: neither a folder nor a tar file")
    dest = Path(tempfile.mkdtemp(dir=tmp))
    with tarfile.open(root) as tar:
        tar.extractall(dest, filter="data")  # no paths outside dest, no links out
    return dest


def summaries(*roots: Path) -> list[dict]:
    out, where = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for root in roots:
            folder = _folder(root, Path(tmp))
            for d in sorted(folder.iterdir()):
                s = run_summary(d) if d.is_dir() else None
                if s is None:
                    continue
                if s["name"] in where:
                    raise SystemExit(f"run {s['name']!r} is in both {where[s['name']]} and {root}: rename one")
                where[s["name"]] = root
                out.append(s)
    return out


def _pairs(overrides: str) -> dict[str, str]:
    words = shlex.split(overrides)
    out = {}
    for i in range(0, len(words) - 2, 3):
        if words[i] != "-p":
            raise ValueError(f"overrides must be '-p key value' triples: {overrides!r}")
        out[words[i + 1]] = words[i + 2]
    return out


def _spec(name: str, pairs: dict[str, str]) -> str:
    return name + "|" + " ".join(f"-p {k} {shlex.quote(v)}" for k, v in pairs.items())


def with_gains(runs: list[dict]) -> tuple[list[dict], float | None]:
    """Each run with ``gain`` (person mask AP + clothing box AP over the base); and the noise
    (None, and no gains, without a run named ``base``)."""
    bases = [r for r in runs if r["name"] in ("base", "base_s1") and r["person_mask_ap"] is not None]
    if not bases:
        return [{**r, "gain": None} for r in runs], None
    pm = statistics.mean(r["person_mask_ap"] for r in bases)
    cl = statistics.mean(r["clothing_box_ap"] for r in bases)
    noise = (abs(bases[0]["person_mask_ap"] - bases[1]["person_mask_ap"])
             + abs(bases[0]["clothing_box_ap"] - bases[1]["clothing_box_ap"])) if len(bases) == 2 else 0.01
    for r in runs:
        r["gain"] = (r["person_mask_ap"] - pm) + (r["clothing_box_ap"] - cl) if r["person_mask_ap"] is not None else None
    return runs, noise


def next_specs(runs: list[dict], noise: float, n: int) -> list[str]:
    # rows named run@tsS are a finished run scored again at another test scale (scripts/eval_scales.py):
    # not a training lever to combine
    singles = sorted((r for r in runs if "+" not in r["name"] and "@" not in r["name"]
                      and not r["name"].startswith("base") and r["gain"] is not None), key=lambda r: -r["gain"])
    winners = [r for r in singles if r["gain"] > noise] or singles[:2]
    combos: list[tuple[str, dict]] = []

    def combine(chosen: list[dict]) -> tuple[str, dict]:
        names, pairs = [], {}
        for r in chosen:
            p = _pairs(r["overrides"])
            if set(p) & set(pairs) or not p:
                continue
            names.append(r["name"])
            pairs.update(p)
        return "+".join(names), pairs

    everything = combine(winners)
    combos.append(everything)
    combos.append(combine(winners[:2]))
    combos.append((everything[0] + "+s1", {**everything[1], "run.seed": "1"}))
    combos.append(combine(singles[:3]))
    combos += [(r["name"] + "+s1", {**_pairs(r["overrides"]), "run.seed": "1"}) for r in singles]  # replicates
    # a run that exists already (same name or same overrides) is never proposed again: its folder would
    # resume it, and two GPUs given the same spec would write into one folder
    seen = {tuple(sorted(_pairs(r["overrides"]).items())) for r in runs}
    names = {r["name"] for r in runs}
    out = []
    for name, pairs in combos:
        key = tuple(sorted(pairs.items()))
        if pairs and key not in seen and name not in names:
            seen.add(key)
            names.add(name)
            out.append(_spec(name, pairs))
    return out[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", type=Path, nargs="+", metavar="root")
    ap.add_argument("--next", type=int, default=0, metavar="N")
    args = ap.parse_args()
    runs, noise = with_gains(summaries(*args.roots))
    if args.next and noise is None:
        raise SystemExit("--next needs a run named 'base' with an evaluation")
    if args.next:
        print("\n".join(next_specs(runs, noise, args.next)))
        return 0
    print(f"{'run':<28}{'iters':>7}{'img/s':>7}{'pmask':>8}{'pbox':>8}{'cloth':>8}{'cl16':>8}{'gain':>8}  overrides")
    for r in runs:
        f = lambda v: f"{v:8.3f}" if isinstance(v, float) else f"{'-':>8}"  # noqa: E731
        print(f"{r['name']:<28}{r['iters']:>7}{r['img_per_s'] or '-':>7}{f(r['person_mask_ap'])}{f(r['person_box_ap'])}"
              f"{f(r['clothing_box_ap'])}{f(r['clothing_box_ap_top16'])}{f(r['gain'])}  {r['overrides']}")
    print("cloth: mean box AP over every clothing class with validation boxes; cl16: over the 16 with the most")
    print(f"noise (|base - base_s1|, person mask + clothing): {noise:.3f}" if noise is not None
          else "no run named 'base': no gains (compare runs of one machine with each other)")
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
