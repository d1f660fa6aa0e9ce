#!/bin/bash
# Trains the English model (and with TRAIN_KWS=1 the keyword spotter beside it)
# on the GPU machine, resuming from the latest checkpoints, straight into $OUT
# so that the periodic saves come back even if the command is cut off:
#   bash training/device/train.sh MINUTES
# Carry: .espeak, training/data/plan_asr.jsonl (plan_kws.jsonl), and the
# checkpoints named below (the English one defaults to the bundled model).
# The caches come from synth.sh started earlier on the same machine (waited
# for), or are synthesized here first.
# $OUT gets asr/{model.pt,train.log,config.json,summary.json} (and kws/...), at
# most 8 files, what the device tool brings back.
cd "$(dirname "$0")/../.."
MIN=${1:-7}
OUT=${OUT:-/tmp/out}
D=training/data
ASR_RESUME=${ASR_RESUME:-models/sewd-demo-en}   # a model.pt or an exported model directory
ASR_FFN=${ASR_FFN:-}                             # widen the feed-forward layers (--ffn); the bundled model's 2304 is about the most under 10 MB
ASR_SQUEEZE=${ASR_SQUEEZE:-}                     # 1: encoder on 20 ms frames (--squeeze; the thirty-sixth run, training/README)
KWS_RESUME=${KWS_RESUME:-models/sewd-demo-kws}  # likewise
[ -n "$TRAIN_KWS" ] && export SYNTH_KWS=1

running() { [ -e $D/synth.pid ] && kill -0 "$(cat $D/synth.pid)" 2>/dev/null; }
if [ ! -e $D/synth.done ]; then
    if running; then
        while running && [ ! -e $D/synth.done ]; do sleep 2; done
    else
        echo "no synthesized data: synthesizing now"
        SYNTH_CORES=0-15 SYNTH_WORKERS=15 bash training/device/synth.sh
    fi
fi
tail -3 /tmp/synth.log
[ -e $D/synth.done ] || { echo "synthesis failed"; exit 1; }

export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p $OUT/asr
python3 training/train_asr.py --device cuda --workers 12 --threads 2 --data asr_gpu \
    --resume $ASR_RESUME ${ASR_FFN:+--ffn $ASR_FFN} ${ASR_SQUEEZE:+--squeeze $ASR_SQUEEZE} --lr 6e-4 --warmup 200 --batch-seconds 240 --aux-ctc 0.3 \
    --eval-every 60 --minutes $MIN --out $OUT/asr > /tmp/asr.log 2>&1 &
asr=$!
if [ -n "$TRAIN_KWS" ]; then
    mkdir -p $OUT/kws
    python3 training/train_kws.py --device cuda --workers 3 --threads 1 --data kws_gpu --init none \
        --resume $KWS_RESUME --lr 5e-4 --warmup 50 --batch 256 --minutes $MIN \
        --out $OUT/kws > $OUT/kws/stdout.log 2>&1 &
    kws=$!
fi
status=0
wait $asr || { echo "ASR training failed:"; tail -20 /tmp/asr.log; status=1; }
grep -E "DEV|FINAL" /tmp/asr.log | tail -8
if [ -n "$TRAIN_KWS" ]; then
    wait $kws || { echo "KWS training failed:"; tail -20 $OUT/kws/stdout.log; status=1; }
    tail -2 $OUT/kws/stdout.log
fi
exit $status
