"""Generate Visual-Genome-scale ``objects.json`` + ``image_data.json`` (deterministic, synthetic).

Usage::

    python benchmarks/make_vg_scale.py /tmp/vg --images 108077      # full VG scale, ~540 MB
    python benchmarks/make_vg_scale.py /tmp/vg --images 500         # tiny

    from make_vg_scale import make_vg_scale
    paths = make_vg_scale("/tmp/vg", images=500)

The files look like the published VG v1.4 files (same keys, key order, separators):
~35 objects per image, names drawn (Zipf-like) from a vocabulary where ~10% of the
objects map to a clothing class of the default taxonomy (plus a few clothing objects
whose name is unmapped but whose synset maps), some exact duplicates, some
``merged_object_ids``, boxes that cross the image border and a few degenerate boxes.
Only the byte layout and the statistics matter here, not the pixels: there are no images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

VG_IMAGES = 108_077

# Common Visual Genome nouns (name, synset) that are not clothing.
_OTHER = [
    ("man", "man.n.01"), ("window", "window.n.01"), ("person", "person.n.01"), ("tree", "tree.n.01"),
    ("building", "building.n.01"), ("sign", "sign.n.02"), ("woman", "woman.n.01"), ("table", "table.n.02"),
    ("wall", "wall.n.01"), ("hand", "hand.n.01"), ("head", "head.n.01"), ("water", "water.n.01"),
    ("sky", "sky.n.01"), ("grass", "grass.n.01"), ("car", "car.n.01"), ("plate", "plate.n.04"),
    ("leaf", "leaf.n.01"), ("leaves", "leaf.n.01"), ("pole", "pole.n.01"), ("cloud", "cloud.n.02"),
    ("light", "light.n.02"), ("ear", "ear.n.01"), ("hair", "hair.n.01"), ("street", "street.n.01"),
    ("fence", "fence.n.01"), ("door", "door.n.01"), ("train", "train.n.01"), ("line", "line.n.04"),
    ("bus", "bus.n.01"), ("chair", "chair.n.01"), ("floor", "floor.n.01"), ("road", "road.n.01"),
    ("snow", "snow.n.02"), ("plane", "airplane.n.01"), ("wheel", "wheel.n.01"), ("eye", "eye.n.01"),
    ("nose", "nose.n.01"), ("leg", "leg.n.01"), ("arm", "arm.n.01"), ("face", "face.n.01"),
    ("ground", "land.n.04"), ("giraffe", "giraffe.n.01"), ("elephant", "elephant.n.01"),
    ("dog", "dog.n.01"), ("cat", "cat.n.01"), ("horse", "horse.n.01"), ("boy", "male_child.n.01"),
    ("girl", "female_child.n.01"), ("clock", "clock.n.01"), ("bowl", "bowl.n.01"), ("tail", "tail.n.01"),
    ("shadow", "shadow.n.01"), ("rock", "rock.n.01"), ("field", "field.n.01"), ("umbrella", "umbrella.n.01"),
    ("bench", "bench.n.01"), ("tile", "tile.n.01"), ("glass", "glass.n.02"), ("picture", "picture.n.01"),
    ("bike", "bicycle.n.01"), ("boat", "boat.n.01"), ("flower", "flower.n.01"), ("mirror", "mirror.n.01"),
    ("pizza", "pizza.n.01"), ("roof", "roof.n.01"), ("bottle", "bottle.n.01"), ("cup", "cup.n.01"),
    ("sidewalk", "sidewalk.n.01"), ("letter", "letter.n.02"), ("shelf", "shelf.n.01"), ("lamp", "lamp.n.02"),
]
_COLORS = ["white", "black", "blue", "red", "green", "brown", "large", "small", "tall", "wooden", "metal"]
# Names that the default taxonomy maps (by name), with their synsets.
_CLOTHING = [
    ("shirt", "shirt.n.01"), ("jacket", "jacket.n.01"), ("hat", "hat.n.01"), ("pants", "trouser.n.01"),
    ("shoe", "shoe.n.01"), ("shoes", "shoe.n.01"), ("glasses", "spectacles.n.01"), ("jeans", "jean.n.01"),
    ("cap", "cap.n.01"), ("helmet", "helmet.n.02"), ("bag", "bag.n.04"), ("shorts", "short_pants.n.01"),
    ("coat", "coat.n.01"), ("dress", "dress.n.01"), ("tie", "necktie.n.01"), ("sunglasses", "sunglasses.n.01"),
    ("backpack", "backpack.n.01"), ("watch", "watch.n.01"), ("skirt", "skirt.n.01"), ("sweater", "sweater.n.01"),
    ("boots", "boot.n.01"), ("sneakers", "gym_shoe.n.01"), ("scarf", "scarf.n.01"), ("glove", "glove.n.02"),
    ("purse", "purse.n.01"), ("necklace", "necklace.n.01"), ("uniform", "uniform.n.01"), ("sleeve", "sleeve.n.01"),
    ("logo", "logo.n.01"), ("belt", "belt.n.02"), ("t-shirt", "jersey.n.02"), ("vest", "vest.n.01"),
]


def _vocabulary(rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray]:
    """(names, synsets, probabilities): ~90% of the mass on non-clothing, ~10% clothing."""
    names, syns, weights = [], [], []
    for group, mass in ((_OTHER, 0.885), (_CLOTHING, 0.1)):
        g_names, g_syns = [], []
        for n, s in group:
            g_names.append(n)
            g_syns.append(s)
            for c in _COLORS:  # "white building": VG has ~75k distinct names, most with adjectives
                g_names.append(f"{c} {n}")
                g_syns.append(s)
        # Zipf-like: bare nouns first and most frequent
        order = np.argsort([(" " in n) for n in g_names], kind="stable")
        w = 1.0 / (np.arange(len(order)) + 2.0)
        w = w / w.sum() * mass
        for rank, i in enumerate(order):
            names.append(g_names[i])
            syns.append(g_syns[i])
            weights.append(w[rank])
    # clothing objects with an unmapped name but a mapped synset: found through the synset
    for n, s in (("sports top", "shirt.n.01"), ("rain jacket", "raincoat.n.01"), ("footgear", "shoe.n.01")):
        names.append(n)
        syns.append(s)
        weights.append(0.005)
    # a few weird names: brackets and quotes inside strings (parsers must not trip on them)
    for n in ('"shirt" sign', "[logo]", "{brace}", "back\\slash"):
        names.append(n)
        syns.append("sign.n.02")
        weights.append(0.0025)
    p = np.asarray(weights, dtype=np.float64)
    return names, syns, p / p.sum()


def _url(image_id: int) -> str:
    folder = "VG_100K_2" if image_id % 3 == 0 else "VG_100K"
    return f"https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"


def make_vg_scale(out_dir: str | os.PathLike, images: int = VG_IMAGES, objects_per_image: float = 35.0,
                  seed: int = 0) -> dict:
    """Write ``image_data.json`` and ``objects.json`` under ``out_dir``; return paths and counts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names, syns, p = _vocabulary(rng)
    # json.dumps once per vocabulary entry: escapes quotes and backslashes exactly like VG's writer
    names_js = [json.dumps([n]) for n in names]
    syns_js = [json.dumps([s]) for s in syns]
    image_ids = [1 + i + (i // 1000) * 7 for i in range(images)]  # VG ids have gaps
    widths = rng.choice([500, 640, 800, 1024], size=images)
    heights = rng.choice([333, 375, 480, 600, 768], size=images)

    image_data = [{"width": int(w), "url": _url(iid), "height": int(h), "image_id": iid,
                   "coco_id": (iid * 7 if iid % 4 == 0 else None), "flickr_id": (iid * 13 if iid % 5 == 0 else None)}
                  for iid, w, h in zip(image_ids, widths, heights)]
    image_data_path = out_dir / "image_data.json"
    image_data_path.write_text(json.dumps(image_data))

    objects_path = out_dir / "objects.json"
    next_object_id = 1_000_000
    n_objects = 0
    counts = rng.poisson(objects_per_image, size=images)
    with open(objects_path, "w", encoding="utf-8") as f:
        f.write("[")
        for i, iid in enumerate(image_ids):
            n = int(counts[i])
            W, H = int(widths[i]), int(heights[i])
            vocab = rng.choice(len(names), size=n, p=p)
            x = rng.integers(-20, W, size=n)
            y = rng.integers(-20, H, size=n)
            w = rng.integers(1, max(2, W // 2), size=n)
            h = rng.integers(1, max(2, H // 2), size=n)
            u = rng.random(size=(n, 4))
            objs = []
            prev = None
            for k in range(n):
                if prev is not None and u[k, 0] < 0.05:  # VG lists the same object again
                    v, xk, yk, wk, hk = prev
                else:
                    v, xk, yk, wk, hk = int(vocab[k]), int(x[k]), int(y[k]), int(w[k]), int(h[k])
                    if u[k, 1] < 0.004:
                        wk = 0
                    elif u[k, 1] < 0.006:
                        hk = -hk
                prev = (v, xk, yk, wk, hk)
                merged = f"[{next_object_id + 7_000_000}]" if u[k, 2] < 0.08 else "[]"
                nm = names_js[v] if u[k, 3] >= 0.03 else f'[{names_js[v][1:-1]}, "thing"]'
                objs.append(f'{{"synsets": {syns_js[v]}, "h": {hk}, "object_id": {next_object_id}, '
                            f'"merged_object_ids": {merged}, "names": {nm}, "w": {wk}, "y": {yk}, "x": {xk}}}')
                next_object_id += 1
            n_objects += n
            sep = ", " if i else ""
            f.write(f'{sep}{{"image_id": {iid}, "objects": [{", ".join(objs)}], "image_url": "{_url(iid)}"}}')
        f.write("]")
    return {"image_data": str(image_data_path), "objects": str(objects_path), "images": images,
            "objects_count": n_objects, "objects_bytes": objects_path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--images", type=int, default=VG_IMAGES)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t = time.perf_counter()
    info = make_vg_scale(a.out_dir, images=a.images, seed=a.seed)
    info["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
