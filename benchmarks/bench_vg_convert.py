"""Benchmark: Visual Genome objects.json -> COCO json, streamed converter vs a plain json.load loop.

Usage::

    python benchmarks/bench_vg_convert.py                 # full VG scale (108,077 images, ~530 MB)
    python benchmarks/bench_vg_convert.py --tiny          # 500 images: what CI runs
    python benchmarks/bench_vg_convert.py --images 20000 --json results.json
    python benchmarks/bench_vg_convert.py --data /tmp/vg  # reuse (or create) the data there
    python benchmarks/bench_vg_convert.py --compare-parsers   # + parse-only: ijson, raw_decode, ours

Each variant runs in a fresh subprocess; we record its wall time, CPU time (user+sys of
it and its worker processes: less sensitive to other jobs on a shared machine), the peak
RSS of the process and of its largest worker (``ru_maxrss``), and the peak RSS of the
whole process tree sampled every 20 ms from /proc. Both variants must produce the same
number of annotations (checked; exit status 1 otherwise).

Variants:
- ``baseline``: ``json.load`` both files, loop over every object calling
  ``Taxonomy.class_for``, clip, dedupe, ``json.dump`` — the 2018 way.
- ``convert``: :func:`yeay_nb.convert.vg.convert_vg` (streamed, cached, 2 processes on big files).
- ``convert_1proc``: the same with ``workers=1``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- variants (child side)
def run_baseline(data: Path, out: Path) -> dict:
    """The plain way: whole files as Python objects, one loop, no caching."""
    from yeay_nb.convert.coco import split_for_image
    from yeay_nb.taxonomy import load_taxonomy

    tax = load_taxonomy()
    with open(data / "image_data.json", encoding="utf-8") as f:
        image_data = json.load(f)
    with open(data / "objects.json", encoding="utf-8") as f:
        objects = json.load(f)
    images, info = [], {}
    for rec in image_data:
        iid = rec.get("image_id", rec.get("id"))
        split = split_for_image(iid, 0.2, 0)
        info[iid] = (rec["width"], rec["height"], split)
        images.append({"id": iid, "file_name": rec["url"].rsplit("/", 1)[-1], "width": rec["width"],
                       "height": rec["height"], "split": split})
    annotations = []
    for rec in objects:
        iid = rec.get("image_id", rec.get("id"))
        if iid not in info:
            continue
        W, H, _ = info[iid]
        seen = set()
        for o in rec["objects"]:
            cls = tax.class_for(o.get("names", []), o.get("synsets", []))
            if cls is None or o["w"] <= 0 or o["h"] <= 0:
                continue
            x0, y0 = max(o["x"], 0), max(o["y"], 0)
            x1, y1 = min(o["x"] + o["w"], W), min(o["y"] + o["h"], H)
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                continue
            key = (cls, round(x0), round(y0), round(x1), round(y1))
            if key in seen:
                continue
            seen.add(key)
            annotations.append({"id": len(annotations) + 1, "image_id": iid, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "category_id": cls,
                                "vg_object_id": o.get("object_id")})
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": tax.coco_categories()}, f)
    return {"annotations": len(annotations), "images": len(images)}


def run_convert(data: Path, out: Path, workers: int | None) -> dict:
    from yeay_nb.convert.vg import convert_vg

    s = convert_vg(data / "image_data.json", data / "objects.json", out, progress=False, workers=workers)
    return {"annotations": s["annotations"]["total"], "images": s["images"]["total"], "workers": s["workers"],
            "timing": s["timing"]}


def run_parse_only(data: Path, how: str) -> dict:
    """Parse-only throughput of the candidate readers (no mapping): which one to build on."""
    import gc

    path = data / "objects.json"
    n = 0
    gc.disable()  # fair to all: the converter pauses the GC too
    if how == "ijson_yajl2_c":
        import ijson.backends.yajl2_c as ijson_c

        with open(path, "rb") as f:
            for rec in ijson_c.items(f, "item", use_float=True):
                n += len(rec["objects"])
    elif how == "json_raw_decode":
        dec = json.JSONDecoder()
        with open(path, encoding="utf-8") as f:
            buf, pos = f.read(16 << 20), 0
            pos = buf.index("[") + 1
            while True:
                while pos < len(buf) and buf[pos] in " \n\r\t,":
                    pos += 1
                if pos < len(buf) and buf[pos] == "]":
                    break
                try:
                    rec, end = dec.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    more = f.read(16 << 20)
                    if not more:
                        raise
                    buf, pos = buf[pos:] + more, 0
                    continue
                n += len(rec["objects"])
                pos = end
    elif how == "ours_orjson_chunks":
        from yeay_nb.convert.vg import iter_record_batches

        for batch in iter_record_batches(path):
            n += sum(len(r["objects"]) for r in batch.records)
            del batch
    else:
        raise SystemExit(f"unknown parser {how}")
    return {"objects": n}


def _child(args: argparse.Namespace) -> int:
    t, c = time.perf_counter(), os.times()
    if args.child == "baseline":
        res = run_baseline(Path(args.data), Path(args.out))
    elif args.child.startswith("convert"):
        res = run_convert(Path(args.data), Path(args.out), 1 if args.child == "convert_1proc" else None)
    else:
        res = run_parse_only(Path(args.data), args.child.removeprefix("parse:"))
    c2 = os.times()
    res.update(wall_s=round(time.perf_counter() - t, 2),
               cpu_s=round((c2.user - c.user) + (c2.system - c.system)
                           + (c2.children_user - c.children_user) + (c2.children_system - c.children_system), 2),
               max_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               worker_max_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
    print("RESULT " + json.dumps(res))
    return 0


# --------------------------------------------------------------------------- parent side
def _tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc (0 when it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def measure(variant: str, data: Path, out: Path) -> dict:
    """Run one variant in a fresh interpreter; add the sampled peak RSS of its process tree."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--data", str(data), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed ({proc.returncode}):\n{stderr[-3000:]}")
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    res["tree_peak_rss_mb"] = round(peak[0] / 1024)
    res["variant"] = variant
    return res


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="VG converter benchmark (see module docstring)")
    ap.add_argument("--images", type=int, default=None, help="images to generate (default: VG's 108,077)")
    ap.add_argument("--tiny", action="store_true", help="500 images (CI smoke run)")
    ap.add_argument("--data", default=None, help="folder for the generated files (kept; reused if present)")
    ap.add_argument("--json", default=None,
                    help="write the results here (default: work/bench/bench_vg_convert_<images>.json)")
    ap.add_argument("--compare-parsers", action="store_true", help="also time parse-only readers")
    ap.add_argument("--no-1proc", action="store_true", help="skip the workers=1 variant")
    ap.add_argument("--only", default=None, help="comma-separated variants to run (e.g. convert,convert_1proc)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)

    from make_vg_scale import VG_IMAGES, make_vg_scale

    images = 500 if args.tiny else (args.images or VG_IMAGES)
    tmp = None
    if args.data:
        data = Path(args.data)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_vg_")
        data = Path(tmp.name)
    stamp = data / "make_vg_scale.json"
    gen = json.loads(stamp.read_text()) if stamp.exists() else None
    if not gen or gen.get("images") != images:
        t = time.perf_counter()
        gen = make_vg_scale(data, images=images)
        gen["seconds"] = round(time.perf_counter() - t, 1)
        stamp.write_text(json.dumps(gen))
    print(f"data: {images} images, {gen['objects_count']} objects, objects.json {gen['objects_bytes'] / 1e6:.0f} MB "
          f"in {data}")

    variants = ["baseline", "convert"] + ([] if args.no_1proc else ["convert_1proc"])
    if args.compare_parsers:
        variants += ["parse:ijson_yajl2_c", "parse:json_raw_decode", "parse:ours_orjson_chunks"]
    if args.only:
        variants = args.only.split(",")
    results = []
    for v in variants:
        load = _load()
        r = measure(v, data, data / f"out_{v.replace(':', '_')}.json")
        r["load_before"] = load
        results.append(r)
        print(f"  {v}: {r['wall_s']} s", flush=True)

    from yeay_nb.convert.coco import format_table

    rows = [(r["variant"], r["wall_s"], r["cpu_s"], r["max_rss_mb"], r["worker_max_rss_mb"], r["tree_peak_rss_mb"],
             r.get("annotations", r.get("objects", "")), r["load_before"]) for r in results]
    print(format_table(rows, ("variant", "wall s", "cpu s", "rss MB", "worker rss MB", "tree peak MB",
                              "annotations/objects", "load 1/5/15 min")))
    counts = {r["variant"]: r["annotations"] for r in results if "annotations" in r}
    same = len(set(counts.values())) == 1
    print("same annotation count: " + ("yes" if same else f"NO {counts}"))
    doc = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "machine": platform.node(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "images": images,
           "objects": gen["objects_count"], "objects_bytes": gen["objects_bytes"],
           "same_annotation_count": same, "results": results}
    # default: under the project's work/ (git-ignored), one file per scale
    out_json = Path(args.json) if args.json else ROOT / "work" / "bench" / f"bench_vg_convert_{images}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(doc, indent=1))
    print(f"results: {out_json}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
