#!/bin/bash
# Synthesizes the planned training sets (training/data/plan_{asr,kws}.jsonl, made
# here by `make_data.py plan-asr|plan-kws`) on the GPU machine's cores, leaving
# cores 0-3 to whatever runs beside it. Writes training/data/{asr,kws}_gpu_*,
# then training/data/synth.done (or synth.failed); its pid is in synth.pid while
# it runs and its log in /tmp/synth.log. Start it in the background with
#   (setsid bash training/device/synth.sh < /dev/null > /dev/null 2>&1 &)
cd "$(dirname "$0")/../.."
D=training/data
exec >> /tmp/synth.log 2>&1
rm -f $D/synth.done $D/synth.failed
echo $$ > $D/synth.pid
trap 'rm -f $D/synth.pid' EXIT
. training/device/espeak_env.sh
espeak-ng -v en-us --stdout "test" > /dev/null || { echo "espeak-ng does not run"; touch $D/synth.failed; exit 1; }
CORES=${SYNTH_CORES:-4-15}
W=${SYNTH_WORKERS:-12}
if taskset -c $CORES python3 training/make_data.py synth $D/plan_asr.jsonl --prefix asr_gpu --workers $W &&
   { [ -z "$SYNTH_KWS" ] || taskset -c $CORES python3 training/make_data.py synth $D/plan_kws.jsonl --prefix kws_gpu --workers $W; }; then
    touch $D/synth.done
else
    touch $D/synth.failed
    exit 1
fi
