#!/usr/bin/env bash
# On a lent two-GPU machine: sharded video inference (torchrun -m yeay_nb.infer) on 1 and 2 GPUs,
# person Mask R-CNN R50-FPN + clothing Faster R-CNN R50-FPN (untrained, calibrated as in
# benchmarks/bench_infer_gpu.py), 8 copies of the 960x540 clip, batch 48. Results go to $OUT.
#   carry: .device/infer-wheels .device/videos
#   bash scripts/device_infer_2gpu.sh [gpus...]      (default: 1 2)
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
out=${OUT:-/tmp/out}; mkdir -p "$out"
gpus=${*:-"1 2"}
python3 -m pip install -q --no-deps --no-index .device/infer-wheels/*.whl 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
python3 - <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench_infer_gpu import make_checkpoints
from yeay_nb.video import VideoReader
with VideoReader(".device/videos/juggle_960x540.mp4") as r:
    calib = next(iter(r.frames(max_frames=1)))[1]
Path("/tmp/ck").mkdir(exist_ok=True)
print(make_checkpoints(Path("/tmp/ck"), "resnet50", 500, 833, 4.0, calib))
PY
python3 benchmarks/bench_scaling.py --checkpoint /tmp/ck/clothing.pt --person-model /tmp/ck/person.pt \
    --set convert.ccp.root ../.device/videos --videos .device/videos/juggle_960x540.mp4 --copies 8 \
    --max-frames 240 --batch-size 48 --infer-gpus $gpus --out /tmp/scal2 --json "$out/infer_2gpu.json" \
    2>&1 | tee "$out/infer_2gpu.log" | grep -v "^ *$" | tail -20
for f in /tmp/scal2/*.log; do cp "$f" "$out/$(basename "$f")"; done
