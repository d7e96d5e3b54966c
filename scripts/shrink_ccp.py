"""Write a smaller copy of the Clothing Co-Parsing data (same layout) for a size-limited
transfer, e.g. to a lent GPU machine whose working tree may hold 64 MiB.

Photos are resized so their short side is ``--short-side`` (area interpolation) and
re-encoded as JPEG; label maps are resized with nearest-neighbour interpolation (labels
must not blend) and saved as compressed .mat files, so ``yeay-nb convert ccp`` runs on the
copy exactly as on the original.

    python scripts/shrink_ccp.py --root ../shared/data/ccp --out .device/ccp400 --short-side 400 --quality 78   # 39 MiB
    python scripts/shrink_ccp.py --root ../shared/data/ccp --out .device/ccp400s --quality 78 --first 520      # beside the 36 MiB of infer-wheels

``--first N`` keeps the first N label maps (by number): a subset for the speed scripts, whose
carry also holds PyAV's wheel. Its validation images are still those whose number divides by 5.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import scipy.io
from tqdm import tqdm


def shrink(root: Path, out: Path, short_side: int, quality: int, first: int | None = None) -> int:
    mats = sorted((root / "annotations" / "pixel-level").glob("*.mat"))
    if not mats or not (root / "label_list.mat").is_file():
        raise SystemExit(f"{root} is not a CCP folder: label_list.mat and annotations/pixel-level/*.mat needed")
    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / "pixel-level").mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "label_list.mat", out / "label_list.mat")
    total = 0
    for mat in tqdm(mats[:first], desc="ccp"):
        photo = root / "photos" / f"{mat.stem}.jpg"
        img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        labels = scipy.io.loadmat(str(mat))["groundtruth"]
        h, w = labels.shape
        scale = short_side / min(h, w)
        size = (round(w * scale), round(h * scale))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok, photo
        (out / "photos" / photo.name).write_bytes(buf.tobytes())
        scipy.io.savemat(str(out / "annotations" / "pixel-level" / mat.name), {"groundtruth": labels},
                         do_compression=True)
        total += len(buf)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--short-side", type=int, default=400)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--first", type=int, default=None, metavar="N", help="only the first N label maps")
    a = ap.parse_args()
    total = shrink(a.root, a.out, a.short_side, a.quality, a.first)
    print(f"photos: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
