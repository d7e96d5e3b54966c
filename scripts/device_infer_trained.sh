#!/usr/bin/env bash
# On a lent one-GPU machine (one call, ~8-9 min with TRAIN_S=300): train a CCP model for TRAIN_S seconds (the recipe of
# params/gpu-train-ccp.yaml on the 520-image subset; no weights can be carried: a checkpoint is
# ~170 MB), then run the end-to-end inference benchmark with it as both models (--trained): tf32
# (the default) vs the naive loop, one row per switch flipped (ABLATE, default "CHANNELS_LAST": NHWC
# convolutions, unsettled at tf32; each row alternates with the defaults), bf16 and fp32, each timed and
# checked (box IoU >= 0.99, mask IoU >= 0.98; also fp16, which keeps TF32's mantissa; each precision row alternates with tf32 runs:
# vs_default); rates are medians of REPEAT runs (default 3; with
# training in the same call, REPEAT=1 stays clearer of the 600 s call limit). Results to $OUT.
#   carry: .device/ccp400s .device/infer-wheels .device/videos      (59.7 MiB of the 64)
#   TRAIN_S=300 bash scripts/device_infer_trained.sh [extra bench_infer_gpu.py args]
# TRAIN_ARGS="-p train.norm bn -p train.cuda_graph_shapes 0": more overrides for that training (here: a
# BatchNorm model, which the fast path folds into its convolutions: torchvision's layout at inference).
# CKPT=/tmp/ccpruns/base/model_final.pt: use a model trained earlier on the same warm machine (e.g.
# by scripts/device_sweep_ccp.sh) instead; then only .device/infer-wheels .device/videos are carried.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
out=${OUT:-/tmp/out}; mkdir -p "$out"
# a CKPT named but absent: the machine that trained it went back; stop rather than train on data not carried
[ -z "${CKPT:-}" ] || [ -f "$CKPT" ] || { echo "CKPT=$CKPT not found: a fresh machine (the run that wrote it is gone)" >&2; exit 5; }
python3 -m pip install -q --no-deps --no-index .device/infer-wheels/*.whl 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
ckpt=${CKPT:-/tmp/ccp-trained/model_final.pt}
[ -f "$ckpt" ] || python3 scripts/check_ccp_json.py /tmp/ccp520/coco.json 520 2>/dev/null \
    || python3 -m yeay_nb.convert.ccp --root .device/ccp400s --out /tmp/ccp520/coco.json --workers 16 --no-progress | tail -1
[ -f "$ckpt" ] || python3 -m yeay_nb.train -f params/gpu-train-ccp.yaml \
    -p convert.ccp.root ../.device/ccp400s -p train.coco_json /tmp/ccp520/coco.json -p train.output_dir /tmp/ccp-trained \
    -p train.time_budget_s "${TRAIN_S:-300}" -p train.skip_test true ${TRAIN_ARGS:-} 2>&1 | tr '\r' '\n' | grep -v "^train: " | tail -3
python3 benchmarks/bench_infer_gpu.py --trained "$ckpt" --video .device/videos/juggle_960x540.mp4 \
    --frames 240 --naive-frames 48 --batch-sizes 48 --ablate ${ABLATE:-CHANNELS_LAST} --precisions bf16 fp16 --repeat "${REPEAT:-3}" \
    --json "$out/infer_trained.json" "$@" 2>&1 | tee "$out/infer_trained.log" | grep "bench\]\|frames/s\|naive\|ours"
