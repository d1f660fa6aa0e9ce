#!/usr/bin/env python3
"""The bench model as ONNX, for bench/browser.mjs's onnxruntime-web rows.

Exports bench/.cache/sewd-tiny (the random-weight sew-d-tiny geometry that
cpu_vs_pytorch.py writes, created here too if missing) to
bench/.cache/sewd-tiny/model.onnx: input `input_values` [1, samples] (any
length, normalized as Wav2Vec2FeatureExtractor does), output `logits`
[1, frames, 32], weights inline. torch.onnx's exporter (torch.export, then
onnxscript) keeps transformers' graph as it is, so onnxruntime runs the same
computation sewd does. The export is checked with onnxruntime (Python)
against PyTorch on the bench audio before it is kept.

    /work/venv/bin/python bench/export_onnx.py [--force]

Needs torch, transformers, onnx, onnxscript and onnxruntime (DEVELOPERS.md).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from transformers import Wav2Vec2FeatureExtractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_vs_pytorch import CACHE, ROOT, read_wav, tiny_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--force", action="store_true", help="export again even if model.onnx exists")
    args = ap.parse_args()
    model_dir = CACHE / "sewd-tiny"
    out = model_dir / "model.onnx"
    model = tiny_model(model_dir)
    if out.exists() and out.stat().st_mtime >= (model_dir / "model.safetensors").stat().st_mtime and not args.force:
        print(f"{out.relative_to(ROOT)} is up to date")
        return
    torch.set_num_threads(1)
    t0 = time.time()
    samples = torch.export.Dim("samples", min=400, max=16000 * 600)
    program = torch.onnx.export(
        model,
        (torch.randn(1, 48_000),),
        input_names=["input_values"],
        output_names=["logits"],
        dynamic_shapes={"input_values": {1: samples}},
        dynamo=True,
    )
    # One file (no external data): onnxruntime-web then needs a single fetch.
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save(program.model_proto, tmp, save_as_external_data=False)
    print(f"exported in {time.time() - t0:.0f} s")

    speech = Wav2Vec2FeatureExtractor()(read_wav(ROOT / "tests/fixtures/models/speech_16s.wav"), sampling_rate=16000,
                                        return_tensors="np").input_values.astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(speech)).logits.numpy()
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_values": speech})[0]
    err = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"onnxruntime vs PyTorch on speech_16s: logits {got.shape}, max error {err:.2e} of the largest logit")
    if got.shape != want.shape or not err < 1e-4:
        tmp.unlink()
        sys.exit("export_onnx.py: the ONNX model does not reproduce PyTorch; not kept")
    tmp.replace(out)
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
