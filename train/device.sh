#!/usr/bin/env bash
# One session on a lent GPU machine (the `device` tool: 30 device-minutes, 10 a command, the machine
# given back 30 s after a command ends), in three kinds of call:
#
#   here, once:  python -m train.device_kit --shared ../shared     (.whl/ and data/, git-ignored)
#   start:   run(command="bash train/device.sh start", carry=[".whl", "data"])
#            installs the carried wheels, builds nvc's range coder, measures issue 11's GPU figures
#            into $OUT (decode fps, the coder's M symbols/s on every core, a CUDA-encoded stream
#            decoded on the CPU, `nvc eval --refine` 0, 40 and 40 with bf16 steps), then starts
#            fine-tuning the shipped base in the background (setsid: it outlives the command)
#            for TRAIN_MINUTES
#   watch:   run(command="bash train/device.sh watch")             within 30 s of the last call
#            sleeps WATCH_SECONDS (540), then prints the log's tail and nvidia-smi
#   finish:  run(command="bash train/device.sh finish")
#            stops training, exports the best-validated and the last weights (fp16 safetensors)
#            and the log to $OUT
#
# Back here, validate what came back as every shipped base is validated (fp32, four clips):
#   python -m train validate --config train/configs/stage3_joint.yaml \
#       --model.init_from '[FILES_AT/gpu-best.safetensors]'   (FILES_AT: where the tool put $OUT's files)
# and ship it only if it beats the current base (README, "Training").
#
# Settings (environment): TRAIN_MINUTES (18), MEASURE_SECONDS (420: the measurements' deadline),
# TRAIN_ARGS (appended to `python -m train fit`), SIZES (1920x1080,416x240), FRAMES (12),
# DEVICE (cuda; cpu for a smoke run of this script), NO_WHEELS (set: install nothing from .whl/),
# PY (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device}
TRAIN_MINUTES=${TRAIN_MINUTES:-18}
# The measurements' share of `start`, whose command the tool stops at 10 minutes: a step still
# running at the deadline is stopped (rc 124) and the rest skipped, so training always starts.
MEASURE_SECONDS=${MEASURE_SECONDS:-420}
DEVICE=${DEVICE:-cuda}
RUN=runs/gpu  # gpu.yaml's checkpoint folders
SITE=.site  # the carried wheels, installed (git-ignored)
export PYTHONPATH="$PWD/$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}

setup() {
    mkdir -p "$OUT" "$RUN"
    if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" .whl/*.whl
    fi
    "$PY" setup.py -q build_ext --inplace
    [ -d data/clips ] || { echo "data/ was not carried: python -m train.device_kit first" >&2; exit 2; }
}

step() {  # a measurement that may fail or overrun without stopping the session: training starts
    local name=$1 t0=$SECONDS rc=0 left=$((MEASURE_END - SECONDS))
    shift
    if [ "$left" -lt 10 ]; then
        echo "[$name: skipped, MEASURE_SECONDS spent]" >&2
        return
    fi
    timeout --kill-after=10 "$left" "$@" || rc=$?  # 124: stopped at the deadline
    echo "[$name: rc $rc, $((SECONDS - t0)) s]" >&2  # not into a step's redirected output
}

measure() {
    local sizes=${SIZES:-1920x1080,416x240} frames=${FRAMES:-12} clip
    MEASURE_END=$((SECONDS + MEASURE_SECONDS))
    clip=$(ls data/val/*.y4m | head -n 1)
    if [ "$DEVICE" = cuda ]; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" || true
    fi
    step speed "$PY" -m benchmarks.speed --devices "$DEVICE" --sizes "$sizes" --frames "$frames" \
        --adapt-steps 0 --precisions fp32,bf16 --out "$OUT/speed-$DEVICE.json"
    step coder "$PY" -m benchmarks.speed --coder-only --sizes "$sizes" \
        --range-threads "1,2,4,8,$(nproc)" --out "$OUT/coder.json"
    step portability "$PY" -m benchmarks.portability "$clip" --frames "$frames" \
        --encode-device "$DEVICE" --precisions fp32,bf16
    for r in 0 40; do  # encoder-side refinement's time where the network runs on the card
        step "refine $r" "$PY" -m nvc.cli eval "$clip" --frames "$frames" --quality 1,4 \
            --device "$DEVICE" --refine "$r" --json > "$OUT/refine-$r.json"
    done
    step "refine 40 bf16" "$PY" -m nvc.cli eval "$clip" --frames "$frames" --quality 1,4 \
        --device "$DEVICE" --refine 40 --refine-precision bf16 --json > "$OUT/refine-40-bf16.json"
}

train() {
    local base smoke=""
    base=$(ls weights/*.safetensors | head -n 1)
    if [ "$DEVICE" = cpu ]; then  # a smoke run of this script: tiny steps, validated at once
        smoke="--trainer.accelerator cpu --trainer.precision 32-true --model.channels_last false
               --data.init_args.batch_size 2 --data.init_args.crop 64 --data.init_args.frames 3
               --data.init_args.val_frames 2 --data.init_args.steps_per_epoch 4 --model.unroll [[0,1]]"
    fi
    # shellcheck disable=SC2086  # TRAIN_ARGS and smoke are lists of arguments
    setsid nohup "$PY" -m train fit --config train/configs/gpu.yaml \
        --model.init_from "[$base]" --model.lr 0.00002 --model.unroll '[[0, 6]]' \
        --data.init_args.batch_size 32 --data.init_args.steps_per_epoch 1000 \
        --trainer.max_time "00:00:$(printf %02d "$TRAIN_MINUTES"):00" \
        $smoke ${TRAIN_ARGS:-} > "$RUN/train.log" 2>&1 < /dev/null &
    echo "training from $base for $TRAIN_MINUTES minutes: $RUN/train.log"
}

finish() {
    mkdir -p "$OUT"
    pkill -INT -f "train fit" || true
    for _ in $(seq 60); do pgrep -f "train fit" >/dev/null || break; sleep 2; done
    local best last
    best=$(ls -t "$RUN"/best/*.ckpt 2>/dev/null | head -n 1 || true)
    last=$RUN/ckpt/last.ckpt
    [ -n "$best" ] && "$PY" -m train.export "$best" -o "$OUT/gpu-best.safetensors"
    [ -f "$last" ] && "$PY" -m train.export "$last" -o "$OUT/gpu-last.safetensors"
    progress 400 > "$OUT/train-log-tail.txt"
    progress 20
}

progress() {  # the log's last lines, Lightning's progress bar cut at its carriage returns
    tr '\r' '\n' < "$RUN/train.log" | grep -v -e '^ *$' -e 'Validation' | tail -n "$1"
}

case "${1:-}" in
    start) setup; measure 2>&1 | tee "$OUT/measure.txt"
           find "$OUT" -maxdepth 1 -type f -empty -delete  # a skipped step's redirected output
           train ;;
    watch) sleep "${WATCH_SECONDS:-540}"; progress 12; nvidia-smi || true ;;
    finish) finish ;;
    *) echo "usage: bash train/device.sh start|watch|finish (see its header)" >&2; exit 2 ;;
esac
