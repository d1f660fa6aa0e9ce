"""Exports a trained run to a Hugging Face model directory.

  python training/export.py asr   # training/data/asr_run -> models/sewd-demo-en
  python training/export.py kws   # training/data/kws_run -> models/sewd-demo-kws
  python training/export.py asr training/data/asr_run_x   # another run directory
  python training/export.py asr training/data/asr_run_x/model.avg.pt   # one checkpoint of a run
  python training/export.py asr RUN --f16   # float16 weights: half the size (a widened model
                                            # fits the 10 MB budget); sewd computes in float32
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
    if dtype == "--f16":
        model = model.half()
    elif dtype is not None:
        sys.exit(f"unknown option {dtype} (expected --f16)")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
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


if __name__ == "__main__":
    main(*sys.argv[1:4])
