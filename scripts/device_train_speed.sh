#!/usr/bin/env bash
# On a lent GPU machine (one call, ~8 min): training speed of issue 7 target 2 on CCP.
#  1. benchmarks/bench_train_levers.py: step time, torchvision's training code vs yeay_nb's, one
#     lever at a time (batched targets, NMS on streams, bf16 GroupNorm), R50-FPN GN at 16 images;
#     then 300 steps with float32 vs bf16 GroupNorm (loss curves, --curve) and the multi-scale
#     padding benchmark with step times (bench_multiscale.py: one scale per image vs per batch);
#  2. benchmarks/bench_train.py --heads-ablation: plain torchvision loop vs yeay_nb.train with the
#     batched heads vs yeay_nb.train with torchvision's heads, same model/data/batch, and a profile
#     of 3 iterations of ours (trace + op table in $OUT/profile/: where the loop loses to the step).
# Results: $OUT/train_speed.tgz.   carry: .device/ccp400s .device/infer-wheels
#   bash scripts/device_train_speed.sh [NORM]      (NORM: gn (default) or bn)
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
start=$SECONDS
norm=${1:-gn}
# staged, then one tarball in $OUT (a call brings back at most 8 files); the logs' tails print below too
final=${OUT:-/tmp/out}; out=$(mktemp -d /tmp/speed-out.XXXX); mkdir -p "$final"
trap 'tar czf "$final/train_speed.tgz" -C "$out" .' EXIT
python3 -m pip install -q --no-deps --no-index .device/infer-wheels/*.whl 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpus.txt"
timeout 300 python3 benchmarks/bench_train_levers.py --backbone resnet50 --norm "$norm" --heads standard \
    --sizes 400x608 --batch 16 --steps 10 --curve 300 --json "$out/train_levers.json" 2>&1 | tail -9 \
    | tee "$out/train_levers.log"
timeout 100 python3 benchmarks/bench_multiscale.py --step --backbone resnet50 --norm "$norm" --heads standard \
    --step-batches 24 --json "$out/multiscale.json" 2>&1 | tail -3 | tee "$out/multiscale.log"
if [ "${LOOP:-1}" = 1 ]; then  # LOOP=0: levers, curves and multi-scale only (no CCP data needed)
    [ -f work/ccp400s/coco.json ] || python3 -m yeay_nb.convert.ccp --root .device/ccp400s --out work/ccp400s/coco.json \
        --workers 16 --no-progress | tail -3
    echo "converted at $((SECONDS - start)) s"
    left=$((570 - (SECONDS - start)))
    timeout $((left - 10)) python3 benchmarks/bench_train.py --coco-json work/ccp400s/coco.json --model maskrcnn \
        --backbone resnet50 --norm "$norm" --batch 16 --scales 400 --max-size 667 --iters 30 --warmup 8 --workers 12 \
        --heads-ablation --gn-ablation --profile-out "$out/profile" 2>&1 | tail -3 | tee "$out/bench_train.json"
fi
echo "all done at $((SECONDS - start)) s"
