"""Looking at a converted COCO json: class counts, a histogram, examples with boxes.

Usage (notebook 01)::

    from yeay_nb.convert.preview import class_table, plot_class_histogram, example_grid
    coco = load_coco(coco_json)
    class_table(coco)                      # pandas DataFrame, one row per class
    plot_class_histogram(coco)             # matplotlib Figure
    example_grid(coco, coco_json, n=8)     # matplotlib Figure of images with boxes
"""
from __future__ import annotations

import random
from pathlib import Path

from .coco import class_counts, images_root


def class_table(coco: dict):
    """Per-class annotation counts (train, val, images) as a DataFrame, most frequent first."""
    import pandas as pd

    rows = [{"class": k, **v, "total": v["train"] + v["val"]} for k, v in class_counts(coco).items()]
    df = pd.DataFrame(rows, columns=["class", "train", "val", "images", "total"])
    return df.sort_values("total", ascending=False, kind="stable").reset_index(drop=True)


def plot_class_histogram(coco: dict, title: str = "annotations per class"):
    """A horizontal bar chart of train/val annotations per class (classes with none shown too)."""
    import matplotlib.pyplot as plt

    df = class_table(coco).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(df))))
    ax.barh(df["class"], df["train"], label="train")
    ax.barh(df["class"], df["val"], left=df["train"], label="val")
    ax.set_xlabel("annotations")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def example_grid(coco: dict, coco_json: str | Path, n: int = 8, seed: int = 0, cols: int = 4):
    """A grid of ``n`` random annotated images with their boxes and class names drawn."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    from PIL import Image

    root = images_root(coco, coco_json)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = [im for im in coco["images"] if im["id"] in by_image and (root / im["file_name"]).exists()]
    picked = random.Random(seed).sample(images, min(n, len(images)))
    rows = max(1, -(-len(picked) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax in axes.flat:
        ax.axis("off")
    for ax, im in zip(axes.flat, picked):
        ax.imshow(Image.open(root / im["file_name"]).convert("RGB"))
        for a in by_image[im["id"]]:
            x, y, w, h = a["bbox"]
            color = cmap(a["category_id"] % 20)
            ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, lw=1.5, edgecolor=color))
            ax.text(x, y, names.get(a["category_id"], "?"), fontsize=6, color="white",
                    bbox={"facecolor": color, "pad": 1, "lw": 0})
        ax.set_title(f"{im['file_name']} ({im.get('split', '')})", fontsize=8)
    fig.tight_layout()
    return fig


def dropped_table(summary: dict):
    """What a converter dropped, one row per reason, from a VG/synth or CCP summary."""
    import pandas as pd

    if "dropped_objects" in summary:  # Visual Genome / synthetic wardrobe
        rows = [(f"objects: {k}", v) for k, v in summary["dropped_objects"].items()]
        rows += [(f"images: {k}", v) for k, v in summary.get("dropped_images", {}).items()]
        rows += [(f"records: {k}", v) for k, v in summary.get("skipped_records", {}).items()]
    else:  # Clothing Co-Parsing
        rows = list(summary.get("dropped", {}).items())
    return pd.DataFrame(rows, columns=["reason", "count"])


def unmapped_table(summary: dict, top: int = 50):
    """The most frequent source names/labels that map to no class: candidates for the taxonomy YAML."""
    import pandas as pd

    rows = summary.get("unmapped_names", summary.get("unmapped", []))
    return pd.DataFrame([tuple(r[:2]) for r in rows], columns=["name", "count"]).head(top)
