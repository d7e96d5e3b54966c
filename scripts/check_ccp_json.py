"""Exit 0 when a converted CCP json holds the expected number of images (and say its split);
exit 1 otherwise, naming the file and what it holds. Guards the device scripts against training
on a stale json, e.g. the 520-image subset that the speed scripts convert.

    python scripts/check_ccp_json.py work/ccp400/coco.json 1004
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def main(path: str, expected: int) -> int:
    p = Path(path)
    if not p.is_file():
        print(f"{p}: missing", file=sys.stderr)
        return 1
    images = json.loads(p.read_text())["images"]
    split = Counter(im.get("split", "?") for im in images)
    line = f"{p}: {len(images)} images ({dict(split)})"
    if len(images) != expected:
        print(f"{line}; expected {expected}", file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    raise SystemExit(main(sys.argv[1], int(sys.argv[2])))
