#!/usr/bin/env python3
"""CPU forward pass of the sew-d-tiny geometry: `sewd bench` next to PyTorch eager f32.

Both run in this one script, on the same model files, the same audio and the
same thread count, so the printed ratio is a like-for-like comparison.

    /work/venv/bin/python bench/cpu_vs_pytorch.py [--runs 7] [--threads 2] [--audio WAV]

Needs torch + transformers (see DEVELOPERS.md) and a release build of `sewd`.
The random-weight model is written once into bench/.cache/sewd-tiny/.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import torch
from transformers import SEWDConfig, SEWDForCTC, Wav2Vec2FeatureExtractor

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"

# asapp/sew-d-tiny-100k-ft-ls100h geometry (24 M parameters).
TINY = dict(
    hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
    squeeze_factor=2, num_conv_pos_embeddings=31, num_conv_pos_embedding_groups=16,
    position_buckets=256, max_position_embeddings=512, share_att_key=True,
    pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", hidden_act="gelu_python",
    feat_extract_norm="group", conv_bias=False, vocab_size=32,
)


def tiny_model(dir_: Path):
    if not (dir_ / "model.safetensors").exists():
        torch.manual_seed(0)
        model = SEWDForCTC(SEWDConfig(**TINY)).eval()
        model.save_pretrained(dir_)
        Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(dir_)
    return SEWDForCTC.from_pretrained(dir_).eval()


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--audio", type=Path, default=ROOT / "tests/fixtures/models/speech_16s.wav")
    ap.add_argument("--sewd", type=Path, default=ROOT / "target/release/sewd")
    args = ap.parse_args()

    model_dir = CACHE / "sewd-tiny"
    model = tiny_model(model_dir)
    audio = read_wav(args.audio)
    inputs = Wav2Vec2FeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt")

    torch.set_num_threads(args.threads)
    times = []
    with torch.inference_mode():
        model(inputs.input_values)
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model(inputs.input_values)
            times.append((time.perf_counter() - t0) * 1000)
    torch_ms = statistics.median(times)

    out = subprocess.run(
        [str(args.sewd), "bench", "--model", str(model_dir), "--audio", str(args.audio),
         "--runs", str(args.runs), "--threads", str(args.threads)],
        check=True, capture_output=True, text=True,
    )
    sewd = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"audio {sewd['audio_s']:.2f} s, {args.threads} threads, median of {args.runs} runs")
    print(f"pytorch {torch.__version__} eager f32: {torch_ms:8.1f} ms")
    print(f"sewd cpu:                {sewd['median_ms']:8.1f} ms")
    print(f"speed-up (pytorch / sewd): {torch_ms / sewd['median_ms']:.2f}x")
    print(json.dumps({"pytorch_ms": round(torch_ms, 1), "sewd_ms": sewd["median_ms"], "ratio": round(torch_ms / sewd["median_ms"], 3)}))


if __name__ == "__main__":
    sys.exit(main())
