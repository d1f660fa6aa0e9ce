"""Exports a trained run to a Hugging Face model directory.

  python training/export.py asr   # training/data/asr_run -> models/sewd-demo-en
  python training/export.py kws   # training/data/kws_run -> models/sewd-demo-kws
  python training/export.py asr training/data/asr_run_x   # another run directory
  python training/export.py asr training/data/asr_run_x/model.avg.pt   # one checkpoint of a run
  python training/export.py asr RUN --f16   # float16 weights: half the size (a widened model
                                            # fits the 10 MB budget); sewd computes in float32
  python training/export.py asr RUN --int8  # linear layers as int8, one scale per row, the rest
                                            # float16: a quarter of float32 (see save_int8)
"""
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import common as C  # noqa: E402
from train_asr import DATA, FFN_IN, squeeze_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(task, run_dir=None, dtype=None):
    from transformers import (SEWDForCTC, SEWDForSequenceClassification, Wav2Vec2CTCTokenizer,
                              Wav2Vec2FeatureExtractor, Wav2Vec2Processor)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=C.SR, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    if task == "asr":
        from train_asr import asr_config as cfg
        cls, run, out = SEWDForCTC, DATA / "asr_run", ROOT / "models" / "sewd-demo-en"
    else:
        from train_kws import kws_config as cfg
        cls, run, out = SEWDForSequenceClassification, DATA / "kws_run", ROOT / "models" / "sewd-demo-kws"
    run = Path(run_dir) if run_dir else run
    # a run directory means its latest model.pt; a file, that checkpoint (e.g. model.avg.pt)
    if not run.exists():
        sys.exit(f"{run}: no such run directory or checkpoint file")
    checkpoint = run if run.is_file() else run / "model.pt"
    run = checkpoint.parent
    if not checkpoint.exists():
        sys.exit(f"{checkpoint}: the run directory has no model.pt yet")
    state = torch.load(checkpoint)
    # a run's own config.json (written when it ends) knows options such as --ffn;
    # a run cut off before it ends has only model.pt, whose shapes say the width and squeeze
    if (run / "config.json").exists():
        config = type(cfg()).from_pretrained(run)
    else:
        config = (cfg(intermediate_size=state[FFN_IN].shape[0], squeeze_factor=squeeze_of(state))
                  if task == "asr" else cfg())
    model = cls(config)
    model.load_state_dict(state)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    if dtype == "--f16":
        model.half().save_pretrained(out, safe_serialization=True)
    elif dtype == "--int8":
        save_int8(model, out)
    elif dtype is None:
        model.save_pretrained(out, safe_serialization=True)
    else:
        sys.exit(f"unknown option {dtype} (expected --f16 or --int8)")
    if task == "asr":
        with tempfile.TemporaryDirectory() as tmp:
            vocab = Path(tmp) / "vocab.json"
            vocab.write_text(json.dumps({c: i for i, c in enumerate(C.VOCAB)}))
            tok = Wav2Vec2CTCTokenizer(str(vocab), unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                       eos_token="</s>", word_delimiter_token="|", do_lower_case=False)
            Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(out)
            fe.save_pretrained(out)  # preprocessor_config.json (transformers 5 folds it into processor_config.json)
    else:
        fe.save_pretrained(out)
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>10}  {p}")


@torch.no_grad()
def save_int8(model, out):
    """Saves `model` with every linear layer but the output head as int8 weights and one
    float16 scale per output row (symmetric, max |w| / 127), the rest as float16: the
    compressed-tensors "naive-quantized" layout, which sewd dequantizes on load and
    transformers reads with `pip install compressed-tensors`."""
    from safetensors.torch import save_file

    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    for name in linear:
        w = model.get_submodule(name).weight.float()
        scale = (w.abs().amax(1, keepdim=True) / 127).clamp(min=1e-8).half()
        state[f"{name}.weight"] = torch.round(w / scale.float()).clamp(-127, 127).to(torch.int8)
        state[f"{name}.weight_scale"] = scale
    model.half().save_pretrained(out, safe_serialization=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "naive-quantized", "quantization_status": "compressed",
        "ignore": ["lm_head"], "sparsity_config": {},
        "config_groups": {"group_0": {
            "targets": ["Linear"], "format": "naive-quantized", "input_activations": None, "output_activations": None,
            "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False,
                        "observer": "minmax"}}},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
