#!/bin/bash
# Synthesizes the planned training sets (training/data/plan_{asr,kws}.jsonl, made
# here by `make_data.py plan-asr|plan-kws`) on the GPU machine's cores, leaving
# cores 0-3 to whatever runs beside it. Writes training/data/{asr,kws}_gpu_* and
# then training/data/synth.done.
cd "$(dirname "$0")/../.."
. training/device/espeak_env.sh
espeak-ng -v en-us --stdout "test" > /dev/null || { echo "espeak-ng does not run" > training/data/synth.failed; exit 1; }
CORES=${SYNTH_CORES:-4-15}
W=${SYNTH_WORKERS:-12}
taskset -c $CORES python3 training/make_data.py synth training/data/plan_asr.jsonl --prefix asr_gpu --workers $W &&
taskset -c $CORES python3 training/make_data.py synth training/data/plan_kws.jsonl --prefix kws_gpu --workers $W &&
touch training/data/synth.done || touch training/data/synth.failed
