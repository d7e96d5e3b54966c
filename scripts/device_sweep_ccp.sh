#!/usr/bin/env bash
# On a lent machine with several GPUs: one CCP training variant per GPU, all at once, each the
# 430 s recipe of params/gpu-train-ccp.yaml plus its own "-p key value" overrides. Every run
# gets a whole GPU (time budgets stay comparable with one-GPU runs; the host's cores are shared:
# 16 per GPU on nvidia-h100-x4, as on nvidia-h100-x1). The variant named "base" (no overrides)
# is the same-run reference. $OUT/sweep.tgz holds <name>/train.log, metrics.jsonl, eval.json per
# variant; $OUT/sweep.txt the summary table (scripts/sweep_summary.py). EVAL_SCALES="480 560" also
# scores every finished run at those test scales (scripts/eval_scales.py; rows named run@tsS);
# EVAL_SCORE_THRESH=0.001 scores them at that score floor (at EVAL_ST_SCALES, default 400; rows run@tsS-stT);
# EVAL_FLIP=1 with test-time flip augmentation (at EVAL_FLIP_SCALES, default 400; rows run@tsS-flip).
#   carry (first call on a machine): .device/ccp400 .device/lead-wheels
#   bash scripts/device_sweep_ccp.sh 'base|' 'rfs|-p train.repeat_factor_threshold 0.1' ...
# The data is copied to /tmp/ccp400 and converted to /tmp/ccpwork/coco.json once per machine, so
# later calls on the same warm machine need not carry it again. A run longer than one call: give it
# -p train.stop_after_s 450 and repeat the same command, with RESUME_ONLY=1 after the first call.
# CCP_DATA=ccp480: train on another shrunk copy, .device/ccp480 (scripts/shrink_ccp.py --short-side 480
# --quality 75, 51 MiB), copied to /tmp/ccp480 and converted to /tmp/ccpwork-ccp480/coco.json.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
# everything is written to a staging folder and comes back as one tarball plus the summary: a call
# returns at most 8 files from $OUT (loose per-run files were lost that way on 2026-11-27)
final=${OUT:-/tmp/out}; out=$(mktemp -d /tmp/sweep-out.XXXX); mkdir -p "$final"
trap 'tar czf "$final/sweep.tgz" -C "$out" . && cp "$out/sweep.txt" "$final/" 2>/dev/null' EXIT
if [ -d .device/lead-wheels ]; then python3 -m pip install -q --no-deps .device/lead-wheels/*.whl 2>&1 | tail -2; fi
# a machine's first call must carry the data and the wheels; a later call on the same warm machine
# finds them in /tmp (a machine that went back in between is bare again: say so at once)
# RESUME_ONLY=1: every variant must have a checkpoint here already (a long run split over several calls,
# train.stop_after_s): on a machine that went back in between, stop at once rather than silently start
# the runs again from iteration 0 and spend the call on it
if [ -n "${RESUME_ONLY:-}" ]; then
    for spec in "$@"; do
        [ -f "/tmp/ccpruns/${spec%%|*}/model_final.pt" ] \
            || { echo "RESUME_ONLY: no /tmp/ccpruns/${spec%%|*}/model_final.pt: a fresh machine, the earlier calls' runs are gone" >&2; exit 5; }
    done
fi
data=${CCP_DATA:-ccp400}
# the default copy keeps its old work folder (/tmp/ccpwork): earlier calls' commands name it
coco=/tmp/ccpwork/coco.json; [ "$data" = ccp400 ] || coco=/tmp/ccpwork-$data/coco.json
if [ ! -d "/tmp/$data" ] && [ ! -d ".device/$data" ]; then
    echo "no /tmp/$data and no .device/$data: a fresh machine; carry .device/$data .device/lead-wheels" >&2
    exit 4
fi
python3 -c "import pycocotools, orjson" 2>/dev/null \
    || { echo "pycocotools/orjson missing: carry .device/lead-wheels on a machine's first call" >&2; exit 4; }
[ -d "/tmp/$data" ] || cp -r ".device/$data" "/tmp/$data"
python3 scripts/check_ccp_json.py "$coco" 1004 2>/dev/null \
    || python3 -m yeay_nb.convert.ccp --root "/tmp/$data" --out "$coco" --workers 16 --no-progress | tail -2
python3 scripts/check_ccp_json.py "$coco" 1004 | tee "$out/data.txt" || exit 3
ngpu=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1 | tee "$out/gpus.txt"
echo "gpus: $ngpu" | tee -a "$out/gpus.txt"
[ "$(($# + ${GPU_OFFSET:-0}))" -le "$ngpu" ] || { echo "$# variants but $ngpu GPUs" >&2; exit 2; }
i=${GPU_OFFSET:-0}  # GPU_OFFSET=1: leave GPU 0 to other work in the same call
pids=()
for spec in "$@"; do
    name=${spec%%|*}
    overrides=${spec#*|}
    mkdir -p "$out/$name" "/tmp/ccpruns/$name"
    printf '%s\n' "$overrides" > "/tmp/ccpruns/$name/overrides.txt"
    eval "ov=($overrides)"  # shell words, so a quoted value may hold spaces
    CUDA_VISIBLE_DEVICES=$i python3 -m yeay_nb.train -f params/gpu-train-ccp.yaml \
        -p convert.ccp.root "/tmp/$data" -p train.coco_json "$coco" \
        -p train.output_dir "/tmp/ccpruns/$name" "${ov[@]}" 2>&1 | tr '\r' '\n' \
        | grep --line-buffered -v "^train: .*it/s\]$" > "$out/$name/train.log" &
    pids+=($!)
    i=$((i + 1))
done
for p in "${pids[@]}"; do wait "$p"; done
# the finished runs scored again at larger test scales (EVAL_SCALES="480 560"; rows named run@tsS) and/or
# at a lower score floor (EVAL_SCORE_THRESH=0.001, at EVAL_ST_SCALES, default the recipe's 400; rows run@tsS-stT)
gpus=$(seq "${GPU_OFFSET:-0}" $((i - 1)))
if [ -n "${EVAL_SCALES:-}" ]; then
    python3 scripts/eval_scales.py /tmp/ccpruns --coco-json "$coco" --scales $EVAL_SCALES \
        --gpus $gpus 2>&1 | tee -a "$out/eval_scales.txt"
fi
if [ -n "${EVAL_SCORE_THRESH:-}" ]; then
    python3 scripts/eval_scales.py /tmp/ccpruns --coco-json "$coco" --scales ${EVAL_ST_SCALES:-400} \
        --score-thresh "$EVAL_SCORE_THRESH" --gpus $gpus 2>&1 | tee -a "$out/eval_scales.txt"
fi
if [ -n "${EVAL_FLIP:-}" ]; then
    python3 scripts/eval_scales.py /tmp/ccpruns --coco-json "$coco" --scales ${EVAL_FLIP_SCALES:-400} \
        --flip --gpus $gpus 2>&1 | tee -a "$out/eval_scales.txt"
fi
for d in /tmp/ccpruns/*@ts*; do
    [ -d "$d" ] || continue
    mkdir -p "$out/${d##*/}" && cp "$d"/eval.json "$d"/eval.log "$d"/overrides.txt "$d"/metrics.jsonl "$out/${d##*/}/" 2>/dev/null
done
for spec in "$@"; do
    name=${spec%%|*}
    cp /tmp/ccpruns/"$name"/metrics.jsonl /tmp/ccpruns/"$name"/eval.json /tmp/ccpruns/"$name"/overrides.txt "$out/$name/" 2>/dev/null
done
python3 scripts/sweep_summary.py /tmp/ccpruns 2>&1 | tee "$out/sweep.txt" | grep -v "^\[{"
