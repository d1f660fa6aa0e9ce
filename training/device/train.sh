#!/bin/bash
# Trains both demo models at once on the GPU machine, resuming from the CPU-trained
# checkpoints, then copies the results to $OUT:
#   bash training/device/train.sh MINUTES
# Needs training/data/plan_*.jsonl, training/data/asr_run_e3/model.pt and
# training/data/kws_run/model.pt carried over, and the synthesized caches from
# synth.sh (started earlier on the same machine; run here if they are missing).
cd "$(dirname "$0")/../.."
MIN=${1:-6}
OUT=${OUT:-/tmp/out}
D=training/data
if [ ! -e $D/synth.done ]; then
    if ! pgrep -f "make_data.py synth" > /dev/null; then
        echo "no synthesized data: synthesizing now"
        rm -f $D/synth.failed
        SYNTH_CORES=0-15 SYNTH_WORKERS=15 bash training/device/synth.sh
    fi
    while [ ! -e $D/synth.done ] && [ ! -e $D/synth.failed ]; do sleep 2; done
fi
[ -e $D/synth.done ] || { echo "synthesis failed"; cat /tmp/synth.log 2>/dev/null; exit 1; }
tail -2 /tmp/synth.log 2>/dev/null
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
# Two ASR runs side by side (the GPU has room; the small model leaves it mostly
# idle): the larger learning rate that a 20x larger batch allows, and the CPU run's.
asr() {
    python3 training/train_asr.py --device cuda --workers 6 --threads 2 --data asr_gpu \
        --resume $D/asr_run_e3/model.pt --warmup 200 --aux-ctc 0.3 --eval-every 60 --minutes $MIN "$@"
}
asr --lr 6e-4 --batch-seconds 240 --out /tmp/asr_a > /tmp/asr_a.log 2>&1 &
asr --lr 3e-4 --batch-seconds 120 --out /tmp/asr_b > /tmp/asr_b.log 2>&1 &
python3 training/train_kws.py --device cuda --workers 3 --threads 1 --data kws_gpu --init none \
    --resume $D/kws_run/model.pt --lr 5e-4 --warmup 50 --batch 256 --minutes $MIN \
    --out /tmp/kws_gpu_run > /tmp/kws.log 2>&1 &
wait
for r in a b; do grep -E "DEV|FINAL|Error" /tmp/asr_$r.log | tail -6; done
tail -3 /tmp/kws.log
for r in a b; do cp /tmp/asr_$r/model.pt $OUT/asr_${r}_model.pt; cp /tmp/asr_$r.log $OUT/; done
cp /tmp/kws_gpu_run/model.pt $OUT/kws_model.pt; cp /tmp/kws.log $OUT/kws.log
cp /tmp/synth.log $OUT/synth.log 2>/dev/null; true
