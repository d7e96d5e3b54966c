#!/usr/bin/env bash
# On a lent GPU machine: install the carried wheels, convert the carried (shrunk) CCP copy,
# train with params/gpu-train-ccp.yaml plus any extra "-p key value" arguments, and copy
# the metrics, evaluation and log to $OUT.
#   bash scripts/device_train_ccp.sh [-p key value ...]
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
python3 -m pip install -q --no-deps .device/lead-wheels/*.whl 2>&1 | tail -2 || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
out=${OUT:-/tmp/out}
mkdir -p "$out"
# converted here from the full shrunk copy; the speed scripts convert the 520-image subset (.device/ccp400s)
# to work/ccp400s/: check the json really is the 1004-image set (an earlier version of the speed script
# wrote the subset to this path, and two 430 s runs of 2026-11-27 trained on it unnoticed)
python3 scripts/check_ccp_json.py work/ccp400/coco.json 1004 2>/dev/null \
    || python3 -m yeay_nb.convert.ccp --root .device/ccp400 --out work/ccp400/coco.json --no-progress
python3 scripts/check_ccp_json.py work/ccp400/coco.json 1004 || exit 3
python3 -m yeay_nb.train -f params/gpu-train-ccp.yaml -p convert.ccp.root ../.device/ccp400 \
    -p train.coco_json ../work/ccp400/coco.json "$@" 2>&1 | tr '\r' '\n' | grep -v "^train: .*it/s\]$" | tee "$out/train.log" | tail -80
d=$(ls -td work/ccp/train* | head -1)
cp "$d"/metrics.jsonl "$d"/eval.json "$out"/ 2>/dev/null || true
