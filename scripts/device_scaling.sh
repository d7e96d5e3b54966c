#!/usr/bin/env bash
# On a lent multi-GPU machine: install the carried wheels, convert the carried (shrunk) CCP copy,
# then benchmarks/bench_scaling.py (DDP training img/s and sharded inference frames/s on 1..N
# GPUs), then -- if time is left -- benchmarks/bench_train.py (plain torchvision loop vs ours, 1 GPU).
# Results, logs and metrics go to $OUT.
#   carry: .device/ccp400s .device/infer-wheels .device/videos  (a 520-image CCP subset: the wheels take 36 MB of the 64 MiB)
#   bash scripts/device_scaling.sh "1 2 4"
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
start=$SECONDS
gpus=${1:-"1 2"}
out=${OUT:-/tmp/out}; mkdir -p "$out"
python3 -m pip install -q --no-deps --no-index .device/infer-wheels/*.whl 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpus.txt"
[ -f work/ccp400s/coco.json ] || python3 -m yeay_nb.convert.ccp --root .device/ccp400s --out work/ccp400s/coco.json \
    --workers 16 --no-progress | tail -3
echo "converted at $((SECONDS - start)) s"
timeout 480 python3 benchmarks/bench_scaling.py --coco-json work/ccp400s/coco.json --params params/gpu-train-ccp.yaml \
    --set convert.ccp.root ../.device/ccp400s --train-gpus $gpus --infer-gpus $gpus --budget-s 40 --startup-s 90 \
    --videos .device/videos/juggle.mp4 --copies 8 --max-frames 96 --batch-size 8 \
    --out /tmp/scal --json "$out/scaling.json" 2>&1 | tee "$out/scaling.log" | grep -v "^ *$" | tail -40
for f in /tmp/scal/*.log /tmp/scal/train_*/metrics.jsonl; do
    [ -f "$f" ] && cp "$f" "$out/$(echo "${f#/tmp/scal/}" | tr / _)"
done
left=$((560 - (SECONDS - start)))
echo "scaling done at $((SECONDS - start)) s; $left s left"
if [ "$left" -gt 100 ] && [ "${BENCH_TRAIN:-1}" = 1 ]; then
    timeout $((left - 10)) python3 benchmarks/bench_train.py --coco-json work/ccp400s/coco.json --model maskrcnn \
        --backbone resnet50 --norm gn --batch 16 --scales 400 --max-size 667 --iters 30 --warmup 8 --workers 12 \
        2>&1 | tail -3 | tee "$out/bench_train.json"
fi
echo "all done at $((SECONDS - start)) s"
