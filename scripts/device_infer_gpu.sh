#!/usr/bin/env bash
# On a lent one-GPU machine: the end-to-end video inference benchmark (naive 2018 loop vs
# run_inference, two R50-FPN models at 500/833 on a 960x540 clip), lever ablations, a profile,
# and 1080p / 4K runs. Results and logs go to $OUT. Every rate is the median of 3 runs (ablations
# alternate with the defaults): ~6-7 min; pass --repeat 1 for the old ~4 min single-run table.
#   carry: .device/infer-wheels .device/videos   (clips made from juggle.mp4: see benchmarks/RESULTS.md)
#   bash scripts/device_infer_gpu.sh [extra bench_infer_gpu.py args]
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
out=${OUT:-/tmp/out}; mkdir -p "$out"
python3 -m pip install -q --no-deps --no-index .device/infer-wheels/*.whl 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpus.txt"
python3 benchmarks/bench_infer_gpu.py --video .device/videos/juggle_960x540.mp4 --frames 240 --naive-frames 48 \
    --batch-sizes 48 80 120 --ablate --profile "$out/profile.txt" \
    --large .device/videos/juggle_1080p.mp4 .device/videos/juggle_4k.mp4 \
    --json "$out/infer_gpu.json" "$@" 2>&1 | tee "$out/infer_gpu.log" | grep -v "^ *$"
