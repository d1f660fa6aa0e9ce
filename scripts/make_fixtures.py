#!/usr/bin/env python3
"""Generate the SEW-D reference fixtures in tests/fixtures/models/.

Run by hand from the repository root:

    /work/venv/bin/python scripts/make_fixtures.py [--regen-audio]

Needs torch, transformers (written against 5.24), safetensors, numpy and compressed-tensors (for
the ctc_int8 case, which transformers reads back through it); espeak-ng and sox
only when the speech clips are (re)generated.  Everything is deterministic: the speech clips
are only synthesised when missing (or with --regen-audio), and every model is built and
re-initialised from fixed seeds on CPU in float32.  See tests/fixtures/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch
from torch import nn

import transformers
from transformers import (
    SEWDConfig,
    SEWDForCTC,
    SEWDForSequenceClassification,
    SEWDModel,
    Wav2Vec2FeatureExtractor,
)
from transformers.models.sew_d import modeling_sew_d as msd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "models"
SR = 16000

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L",
         "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]
assert len(VOCAB) == 32

# (voice, sentence).  Chosen so that the speech fits in the target length; the rest is silence.
SENTENCES_16S = [
    ("en-us", "She had your dark suit in greasy wash water all year."),
    ("en-us", "Don't ask me to carry an oily rag like that."),
    ("en-gb", "The birch canoe slid on the smooth planks."),
    ("en-us+f3", "Glue the sheet to the dark blue background."),
    ("en-us", "It's easy to tell the depth of a well."),
    ("en-gb", "Turn the radio on."),
]
SENTENCES_3S = [("en-us", "These days a chicken leg is a rare dish.")]
# Exact clip lengths in samples. With the standard 320x conv stack these give 827 and 149 frames,
# which are odd and not multiples of 3, so both squeeze factors hit the "pad after upsampling" path.
LEN_16S = 264_777
LEN_3S = 47_999

CLIPS = {
    "speech_16s.wav": (SENTENCES_16S, LEN_16S),
    "speech_3s.wav": (SENTENCES_3S, LEN_3S),
}

# Standard small conv stack, total stride 320 (20 ms frames), receptive field 400 like real models.
STACK_320 = dict(
    conv_dim=(16, 16, 16, 32, 32, 32, 48),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
)
# Alternative stack (total stride 160, conv_dim[-1] == hidden_size, so no feature_projection).
STACK_160 = dict(
    conv_dim=(16, 24, 32, 32),
    conv_stride=(5, 4, 2, 4),
    conv_kernel=(10, 8, 4, 4),
)


# --------------------------------------------------------------------------------------------
# audio


def transcript_of(sentences) -> str:
    return " ".join(t for _, t in sentences)


def text_to_ids(text: str) -> list[int]:
    ids = []
    prev_space = False
    for ch in text.upper():
        if ch == " ":
            if not prev_space and ids:
                ids.append(VOCAB.index("|"))
            prev_space = True
            continue
        prev_space = False
        if ch in VOCAB:
            ids.append(VOCAB.index(ch))
        # punctuation (. , etc.) is dropped
    return ids


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == SR, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def write_wav(path: Path, samples_i16: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(samples_i16.astype("<i2").tobytes())


def synth_sentence(voice: str, text: str, tmp: Path, idx: int) -> np.ndarray:
    raw = tmp / f"raw{idx}.wav"
    res = tmp / f"res{idx}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    # -D: no dither, so that the resampling is deterministic
    subprocess.run(["sox", "-D", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(res)], check=True)
    with wave.open(str(res), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int32)
    # trim leading / trailing silence, keeping a 50 ms margin
    loud = np.nonzero(np.abs(x) > 300)[0]
    m = SR // 20
    return x[max(loud[0] - m, 0): loud[-1] + m + 1]


def make_clip(path: Path, sentences, n_samples: int) -> None:
    with tempfile.TemporaryDirectory() as td:
        parts = [np.zeros(SR // 10, np.int32)]  # 100 ms lead-in
        for i, (voice, text) in enumerate(sentences):
            parts.append(synth_sentence(voice, text, Path(td), i))
            parts.append(np.zeros(SR // 5, np.int32))  # 200 ms gap
        x = np.concatenate(parts)
    if len(x) > n_samples:
        raise SystemExit(f"{path.name}: speech is {len(x) / SR:.2f}s, longer than {n_samples / SR:.2f}s")
    x = np.concatenate([x, np.zeros(n_samples - len(x), np.int32)])
    write_wav(path, np.clip(x, -32768, 32767).astype(np.int16))


# --------------------------------------------------------------------------------------------
# models


def make_config(**kw) -> SEWDConfig:
    base = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    base.update(STACK_320)
    base.update(kw)
    return SEWDConfig(**base)


@torch.no_grad()
def redraw_parameters(model: nn.Module, seed: int) -> None:
    """Re-draw every parameter at unit gain (see tests/fixtures/README.md)."""
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std=1.0, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean

    done = set()
    params = dict(model.named_parameters())

    def setp(name, value):
        p = params[name]
        assert p.shape == value.shape, (name, p.shape, value.shape)
        p.copy_(value)
        done.add(name)

    skip = set()
    for mname, mod in model.named_modules():
        pre = f"{mname}." if mname else ""
        if id(mod) in skip:
            continue
        if isinstance(mod, msd.SEWDPositionalConvEmbedding):
            skip.add(id(mod.conv))
            conv = mod.conv
            w_g = conv.parametrizations.weight.original0  # [1, 1, K]
            w_v = conv.parametrizations.weight.original1  # [H, H/groups, K]
            out_ch, in_per_group, k = w_v.shape
            # the folded weight slice w[:, :, k] has Frobenius norm g_k; unit gain means each
            # element ~ 1/fan_in = 1/(in_per_group*K), i.e. ||w[:, :, k]||^2 ~ out_ch / K
            gain = math.sqrt(out_ch / k)
            setp(pre + "conv.parametrizations.weight.original0", normal(w_g.shape, 0.1, 1.0).abs() * gain)
            setp(pre + "conv.parametrizations.weight.original1", normal(w_v.shape))
            setp(pre + "conv.bias", normal(conv.bias.shape, 0.1))
        elif isinstance(mod, (nn.Linear, nn.Conv1d)):
            w = mod.weight
            fan_in = w.shape[1] * (w.shape[2] if w.dim() == 3 else 1)
            setp(pre + "weight", normal(w.shape, 1.0 / math.sqrt(fan_in)))
            if mod.bias is not None:
                setp(pre + "bias", normal(mod.bias.shape, 0.1))
        elif isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
            setp(pre + "weight", normal(mod.weight.shape, 0.1, 1.0))
            setp(pre + "bias", normal(mod.bias.shape, 0.1))
        elif isinstance(mod, nn.Embedding):
            setp(pre + "weight", normal(mod.weight.shape))
    for name in params:
        if name.endswith("layer_weights") or name.endswith("masked_spec_embed"):
            setp(name, normal(params[name].shape))
    missing = set(params) - done
    assert not missing, f"parameters not re-drawn: {sorted(missing)}"


@torch.no_grad()
def quantize_linears(model: nn.Module, groups: dict) -> tuple[dict, dict]:
    """Rounds the weights of the linear layers each group targets to integers, in place.

    Returns the compressed-tensors `quantization_config` and, per layer, the tensors a
    naive-quantized checkpoint stores (`weight` as int8, `weight_scale`, `weight_zero_point`
    when asymmetric). The model keeps the dequantized weights `(q - zero_point) * scale`,
    which is what transformers computes with after loading such a checkpoint."""
    import re

    stored, config_groups = {}, {}
    for gname, (targets, args) in groups.items():
        config_groups[gname] = dict(targets=targets, weights=dict(type="int", dynamic=False, observer="minmax", **args),
                                    input_activations=None, output_activations=None, format="naive-quantized")
        bits, sym = args["num_bits"], args["symmetric"]
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        matched = [m for m, mod in model.named_modules()
                   if isinstance(mod, nn.Linear) and any(re.match(t[3:], m) for t in targets)]
        assert matched, f"group {gname} matched no layer"
        for mname in matched:
            mod = model.get_submodule(mname)
            assert mname not in stored, f"{mname} is targeted twice"
            w = mod.weight
            if args["strategy"] == "tensor":
                view = w.reshape(1, 1, -1)
            elif args["strategy"] == "channel":
                view = w.reshape(w.shape[0], 1, -1)
            else:
                view = w.reshape(w.shape[0], w.shape[1] // args["group_size"], -1)
            lo, hi = view.amin(-1, keepdim=True).clamp(max=0), view.amax(-1, keepdim=True).clamp(min=0)
            if sym:
                scale = torch.maximum(-lo, hi) / qmax
                zero = torch.zeros_like(scale)
            else:
                scale = (hi - lo) / (qmax - qmin)
                zero = torch.round(qmin - lo / scale).clamp(qmin, qmax)
            q = torch.round(view / scale + zero).clamp(qmin, qmax)
            w.copy_(((q - zero) * scale).reshape(w.shape))
            shape = (1,) if args["strategy"] == "tensor" else scale.shape[:2]
            stored[mname] = {"weight": q.reshape(w.shape).to(torch.int8), "weight_scale": scale.reshape(shape).contiguous()}
            if not sym:
                stored[mname]["weight_zero_point"] = zero.reshape(shape).to(torch.int8)
    config = dict(quant_method="compressed-tensors", format="naive-quantized", quantization_status="compressed",
                  config_groups=config_groups, ignore=[], sparsity_config={})
    return config, stored


def legacy_state_dict(model: nn.Module, strip_prefix: bool) -> dict[str, torch.Tensor]:
    """State dict with the old weight_norm naming (weight_g / weight_v), optionally without `sew_d.`."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        k = k.replace("parametrizations.weight.original1", "weight_v")
        if strip_prefix and k.startswith("sew_d."):
            k = k[len("sew_d."):]
        out[k] = v.detach().clone().contiguous()
    return out


# --------------------------------------------------------------------------------------------
# cases


def case_list():
    ls = 0.05  # an unusual eps, to make sure implementations read it from config.json
    return [
        dict(
            name="ctc_group_both_shared",
            cls=SEWDForCTC,
            save="save_pretrained",
            audio=["speech_16s.wav"],
            labels="transcript",
            outputs=["logits", "hidden_states"],
            description="SEWDForCTC, group-norm conv stack without bias, squeeze 2, p2c+c2p with shared "
            "keys, log buckets 256 / max 512, LayerNorm'd rel embeddings, odd pos-conv kernel 31, "
            "gelu; saved with save_pretrained (sew_d. prefix, parametrizations.weight.original0/1).",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=2,
                pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=256,
                max_position_embeddings=512, norm_rel_ebd="layer_norm", num_conv_pos_embeddings=31,
                num_conv_pos_embedding_groups=4, hidden_act="gelu", feat_extract_activation="gelu",
            ),
        ),
        dict(
            name="base_layer_sq3_c2p_separate",
            cls=SEWDModel,
            save="legacy_bin",
            audio=["speech_16s.wav"],
            outputs=["last_hidden_state", "hidden_states"],
            description="SEWDModel, layer-norm conv stack with bias, squeeze 3, c2p only with a separate "
            "pos_key_proj, log buckets 32 / max 128, even pos-conv kernel 16 (SamePad removes one), "
            f"gelu_new, layer_norm_eps={ls} and feature_layer_norm_eps=0.02; saved as pytorch_model.bin "
            "(torch.save of the state dict) with old weight_g/weight_v names, no prefix.",
            config=dict(
                feat_extract_norm="layer", conv_bias=True, squeeze_factor=3, pos_att_type=["c2p"],
                share_att_key=False, position_buckets=32, max_position_embeddings=128,
                norm_rel_ebd="layer_norm", num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                hidden_act="gelu_new", feat_extract_activation="gelu", layer_norm_eps=ls,
                feature_layer_norm_eps=0.02,
            ),
        ),
        dict(
            name="ctc_p2c_nobuckets",
            cls=SEWDForCTC,
            save="legacy_safetensors",
            audio=["speech_16s.wav"],
            outputs=["logits"],
            description="SEWDForCTC, p2c only with a separate pos_query_proj, no buckets (-1) and "
            "max_position_embeddings 64 (relative positions clamp at +-64 over 413 frames), no rel-"
            "embedding LayerNorm, relu, squeeze 2, mask_time_prob 0 (no masked_spec_embed); "
            "model.safetensors without `sew_d.` prefix and with weight_g/weight_v names.",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=2, pos_att_type=["p2c"],
                share_att_key=False, position_buckets=-1, max_position_embeddings=64,
                norm_rel_ebd="none", num_conv_pos_embeddings=20, num_conv_pos_embedding_groups=8,
                hidden_act="relu", feat_extract_activation="gelu", mask_time_prob=0.0,
            ),
        ),
        dict(
            name="base_attentions_short",
            cls=SEWDModel,
            save="save_pretrained",
            audio=["speech_3s.wav"],
            outputs=["last_hidden_state", "hidden_states", "attentions"],
            description="SEWDModel, 4 heads, p2c+c2p shared keys, log buckets 16 / max 64, swish, "
            "layer_norm_eps 1e-7, layer-norm conv stack with bias; outputs attentions too.",
            config=dict(
                num_attention_heads=4, feat_extract_norm="layer", conv_bias=True, squeeze_factor=2,
                pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=16,
                max_position_embeddings=64, norm_rel_ebd="layer_norm", num_conv_pos_embeddings=15,
                num_conv_pos_embedding_groups=4, hidden_act="swish", feat_extract_activation="gelu",
                layer_norm_eps=1e-7,
            ),
        ),
        dict(
            name="cls_weighted",
            cls=SEWDForSequenceClassification,
            save="save_pretrained",
            audio=["speech_3s.wav"],
            labels=3,
            outputs=["logits"],
            description="SEWDForSequenceClassification with use_weighted_layer_sum (softmax over "
            "layer_weights of the encoder hidden states, which are at the squeezed length), 5 labels, "
            "classifier_proj_size 24, cross-entropy loss for label 3.",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=2,
                pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=32,
                max_position_embeddings=128, num_conv_pos_embeddings=31,
                num_conv_pos_embedding_groups=4, hidden_act="gelu", use_weighted_layer_sum=True,
                num_labels=5, id2label={i: f"class_{c}" for i, c in enumerate("abcde")},
                label2id={f"class_{c}": i for i, c in enumerate("abcde")}, classifier_proj_size=24,
            ),
        ),
        dict(
            name="cls_mean",
            cls=SEWDForSequenceClassification,
            save="save_pretrained",
            audio=["speech_3s.wav"],
            outputs=["logits"],
            description="SEWDForSequenceClassification, mean pooling of last_hidden_state, tanh, "
            "feat_extract_activation gelu_python, squeeze 3, different conv stack (total stride 160, "
            "conv_dim[-1] == hidden_size so no feature_projection), 3 labels.",
            config=dict(
                **STACK_160, feat_extract_norm="group", conv_bias=True, squeeze_factor=3,
                pos_att_type=["c2p", "p2c"], share_att_key=True, position_buckets=64,
                max_position_embeddings=256, num_conv_pos_embeddings=9,
                num_conv_pos_embedding_groups=1, hidden_act="tanh",
                feat_extract_activation="gelu_python", num_labels=3, classifier_proj_size=16,
            ),
        ),
        dict(
            name="ctc_padded_batch",
            cls=SEWDForCTC,
            save="save_pretrained",
            audio=["speech_16s.wav", "speech_3s.wav"],
            padded=True,
            labels="transcript",
            outputs=["logits"],
            description="SEWDForCTC on the zero-padded batch [speech_16s, speech_3s] with attention_mask "
            "(padding=True, per-example normalisation), p2c+c2p with separate pos_key_proj and "
            "pos_query_proj, buckets 256 / max 512; CTC loss with labels padded with -100.",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=2,
                pos_att_type=["p2c", "c2p"], share_att_key=False, position_buckets=256,
                max_position_embeddings=512, norm_rel_ebd="layer_norm", num_conv_pos_embeddings=31,
                num_conv_pos_embedding_groups=4, hidden_act="gelu_python",
            ),
        ),
        dict(
            name="base_norel",
            cls=SEWDModel,
            save="save_pretrained",
            audio=["speech_3s.wav"],
            outputs=["last_hidden_state", "hidden_states"],
            description="SEWDModel with relative_attention off but pos_att_type p2c+c2p still set: "
            "no relative embeddings, yet transformers still divides the scores by sqrt(3 d).",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=2, relative_attention=False,
                pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=32,
                max_position_embeddings=128, num_conv_pos_embeddings=31,
                num_conv_pos_embedding_groups=4, hidden_act="gelu",
            ),
        ),
        dict(
            name="ctc_sq1",
            cls=SEWDForCTC,
            save="save_pretrained",
            audio=["speech_3s.wav"],
            outputs=["logits", "hidden_states"],
            description="SEWDForCTC with squeeze_factor 1: no pooling, the positional conv at stride 1 "
            "and an upsampling projection hidden -> hidden with no reshape; p2c+c2p shared keys, "
            "buckets 64 / max 256 (relative distances at the full frame rate), gelu_python.",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=1,
                pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=64,
                max_position_embeddings=256, norm_rel_ebd="layer_norm", num_conv_pos_embeddings=32,
                num_conv_pos_embedding_groups=16, hidden_act="gelu_python",
            ),
        ),
        dict(
            name="ctc_int8",
            cls=SEWDForCTC,
            save="compressed_tensors",
            audio=["speech_3s.wav"],
            outputs=["logits", "hidden_states"],
            description="SEWDForCTC with integer weights in the compressed-tensors naive-quantized layout: "
            "attention projections int8 per channel (symmetric), feed-forward layers int8 per group of 16 "
            "inputs with zero points, the upsampling projection 4-bit per tensor; the reference outputs "
            "are those of the dequantized weights, as transformers loads them.",
            config=dict(
                feat_extract_norm="group", conv_bias=False, squeeze_factor=2,
                pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=64,
                max_position_embeddings=256, norm_rel_ebd="layer_norm", num_conv_pos_embeddings=32,
                num_conv_pos_embedding_groups=16, hidden_act="gelu_python",
            ),
            quantize={
                "attention": (["re:.*attention\\.self\\.(query|key|value)_proj$", "re:.*attention\\.output\\.dense$"],
                              dict(num_bits=8, symmetric=True, strategy="channel")),
                "feed_forward": (["re:.*intermediate\\.dense$", "re:.*layer\\.\\d+\\.output\\.dense$"],
                                 dict(num_bits=8, symmetric=False, strategy="group", group_size=16)),
                "upsample": (["re:.*upsample\\.projection$"], dict(num_bits=4, symmetric=True, strategy="tensor")),
            },
        ),
    ]


def extractor() -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def attention_stats(attns, mask) -> dict:
    """Row max-prob / entropy statistics of stacked attentions [L, B, heads, T, T] over valid rows."""
    a = attns.double()
    L, B, Hh, T, _ = a.shape
    n_valid = mask.sum(-1).double() if mask is not None else torch.full((B,), float(T), dtype=torch.float64)
    rowmask = (torch.arange(T)[None, :] < n_valid[:, None]) if mask is not None else torch.ones(B, T, dtype=torch.bool)
    maxp = a.max(-1).values  # [L,B,H,T]
    ent = -(a.clamp_min(1e-30).log() * a).sum(-1)
    uni = (1.0 / n_valid)[None, :, None, None].expand_as(maxp)
    logn = n_valid.log()[None, :, None, None].expand_as(ent)
    sel = rowmask[None, :, None, :].expand_as(maxp)
    return dict(
        max_prob_mean=float(maxp[sel].mean()),
        max_prob_median=float(maxp[sel].median()),
        max_prob_max=float(maxp[sel].max()),
        max_prob_over_uniform_mean=float((maxp / uni)[sel].mean()),
        norm_entropy_mean=float((ent / logn)[sel].mean()),
    )


def run_case(case: dict, seed: int, waves: dict, fe: Wav2Vec2FeatureExtractor) -> dict:
    name = case["name"]
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)

    torch.manual_seed(seed)
    np.random.seed(seed)
    config = make_config(**case["config"])
    model = case["cls"](config)
    redraw_parameters(model, seed)
    if "quantize" in case:
        quant_config, quantized = quantize_linears(model, case["quantize"])
    model.eval()

    clips = [waves[a] for a in case["audio"]]
    padded = case.get("padded", False)
    if padded:
        feats = fe(clips, sampling_rate=SR, padding=True, return_attention_mask=True, return_tensors="pt")
        input_values = feats["input_values"]
        attention_mask = feats["attention_mask"].to(torch.long)
    else:
        feats = fe(clips[0], sampling_rate=SR, return_attention_mask=True, return_tensors="pt")
        input_values = feats["input_values"]
        attention_mask = None
    assert input_values.dtype == torch.float32

    labels_meta = None
    labels_t = None
    transcripts = None
    if case.get("labels") == "transcript":
        transcripts = [transcript_of(CLIPS[a][0]) for a in case["audio"]]
        ids = [text_to_ids(t) for t in transcripts]
        if len(ids) == 1:
            labels_meta = ids[0]
            labels_t = torch.tensor([ids[0]], dtype=torch.long)
        else:
            m = max(len(x) for x in ids)
            labels_meta = [x + [-100] * (m - len(x)) for x in ids]
            labels_t = torch.tensor(labels_meta, dtype=torch.long)
    elif isinstance(case.get("labels"), int):
        labels_meta = case["labels"]
        labels_t = torch.tensor([labels_meta], dtype=torch.long)

    want = case["outputs"]
    kwargs = dict(output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        if labels_t is not None:
            out = model(input_values, attention_mask=attention_mask, labels=labels_t, **kwargs)
        else:
            out = model(input_values, attention_mask=attention_mask, **kwargs)

    tensors = {}
    if "logits" in want:
        tensors["logits"] = out.logits
    if "last_hidden_state" in want:
        tensors["last_hidden_state"] = out.last_hidden_state
    if "hidden_states" in want:
        tensors["hidden_states"] = torch.stack(out.hidden_states, 0)
    if "attentions" in want:
        tensors["attentions"] = torch.stack(out.attentions, 0)
    attn_all = torch.stack(out.attentions, 0)

    # feature-level mask at the encoder (squeezed) length, for attention statistics
    enc_mask = None
    if attention_mask is not None:
        base = model if isinstance(model, SEWDModel) else model.sew_d
        T = base._get_feat_extract_output_lengths(torch.tensor(input_values.shape[1])).item()
        fm = base._get_feature_vector_attention_mask(T, attention_mask).float()
        enc_mask = nn.functional.max_pool1d(fm.unsqueeze(1), config.squeeze_factor, config.squeeze_factor).squeeze(1)
    stats = attention_stats(attn_all, enc_mask)

    outputs_meta, shapes = {}, {}
    for k, t in tensors.items():
        arr = t.detach().cpu().numpy().astype(np.float32)
        assert np.isfinite(arr).all(), (name, k)
        np.save(d / f"{k}.npy", arr)
        outputs_meta[k] = f"{k}.npy"
        shapes[k] = list(arr.shape)
    if padded:
        # bool ([B, L], `|b1`) rather than int64 to keep the fixture small; 1 = real sample
        np.save(d / "attention_mask.npy", attention_mask.numpy().astype(bool))
        shapes["attention_mask"] = list(attention_mask.shape)

    loss = None
    loss_per_example = None
    if labels_t is not None:
        loss = float(out.loss)
        assert math.isfinite(loss), name
        if isinstance(model, SEWDForCTC):
            # unreduced CTC losses (torch 'mean' divides each by its target length, then averages)
            am = attention_mask if attention_mask is not None else torch.ones_like(input_values, dtype=torch.long)
            lens = model._get_feat_extract_output_lengths(am.sum(-1)).to(torch.long)
            lab_mask = (labels_t != -100) & (labels_t != 0)
            lp = nn.functional.log_softmax(out.logits, -1, dtype=torch.float32).transpose(0, 1)
            per = nn.functional.ctc_loss(lp, labels_t.masked_select(lab_mask), lens, lab_mask.sum(-1),
                                         blank=0, reduction="none")
            loss_per_example = [float(x) for x in per]

    # ---- save the weights
    if case["save"] == "save_pretrained":
        model.save_pretrained(d)
        weights_file = "model.safetensors"
    elif case["save"] == "legacy_bin":
        config.architectures = [type(model).__name__]
        config.save_pretrained(d)
        torch.save(legacy_state_dict(model, strip_prefix=True), d / "pytorch_model.bin")
        weights_file = "pytorch_model.bin"
    elif case["save"] == "legacy_safetensors":
        from safetensors.torch import save_file

        config.architectures = [type(model).__name__]
        config.save_pretrained(d)
        save_file(legacy_state_dict(model, strip_prefix=True), str(d / "model.safetensors"), metadata={"format": "pt"})
        weights_file = "model.safetensors"
    elif case["save"] == "compressed_tensors":
        from safetensors.torch import save_file

        model.save_pretrained(d)
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        for mname, stored in quantized.items():
            state.update({f"{mname}.{k}": v for k, v in stored.items()})
        save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
        with open(d / "config.json") as f:
            saved = json.load(f)
        saved["quantization_config"] = quant_config
        with open(d / "config.json", "w") as f:
            json.dump(saved, f, indent=2, sort_keys=True)
            f.write("\n")
        weights_file = "model.safetensors"
    else:
        raise ValueError(case["save"])

    if isinstance(model, SEWDForCTC):
        with open(d / "vocab.json", "w") as f:
            json.dump({s: i for i, s in enumerate(VOCAB)}, f, indent=2)
        fe.save_pretrained(d)

    # ---- reload with transformers and check the outputs agree
    reload_note = check_reload(case, d, input_values, attention_mask, tensors)

    inputs_meta = []
    for a, x in zip(case["audio"], clips):
        xd = x.astype(np.float64)
        iv = input_values[len(inputs_meta)].numpy()
        n = len(x)
        inputs_meta.append(dict(
            file=a, num_samples=n, raw_mean=float(xd.mean()), raw_var=float(xd.var()),
            # a few normalised input values inside the speech, keyed by sample index
            input_values_at={str(i): float(iv[i]) for i in (4000, 8000, 16000, 24000, 32000, 40000) if i < n},
            input_values_abs_sum=float(np.abs(iv[:n].astype(np.float64)).sum()),
        ))

    meta = {
        "class": type(model).__name__,
        "audio": case["audio"],
        "padded": padded,
        "labels": labels_meta,
        "transcripts": transcripts,
        "outputs": outputs_meta,
        "shapes": shapes,
        "loss": loss,
        "loss_per_example": loss_per_example,
        "weights": weights_file,
        "description": case["description"],
        "seed": seed,
        "inputs": inputs_meta,
        "attention_stats": stats,
        "reload_check": reload_note,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    with open(d / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    return dict(name=name, tensors={k: (list(v.shape), float(v.abs().max())) for k, v in tensors.items()},
                loss=loss, stats=stats, reload=reload_note)


def check_reload(case, d, input_values, attention_mask, tensors) -> str:
    """Load the saved directory with from_pretrained and compare; returns a short note."""
    transformers.logging.set_verbosity_error()
    try:
        m = case["cls"].from_pretrained(d)
    except Exception as e:  # noqa: BLE001
        return f"from_pretrained failed: {type(e).__name__}: {e}"[:300]
    m.eval()
    with torch.no_grad():
        out = m(input_values, attention_mask=attention_mask)
    key = "logits" if "logits" in tensors else "last_hidden_state"
    ref = tensors[key]
    got = getattr(out, key)
    diff = float((ref - got).abs().max())
    return f"from_pretrained {key} max|diff| = {diff:.3g}"


# --------------------------------------------------------------------------------------------
# relative positions


def rel_pos_tables() -> dict:
    L = 1000
    table = {"description": "Bucketed relative position (query i - key j) as computed by transformers' "
             "build_relative_position(q, k, bucket_size, max_position); each list is indexed by "
             "rel + (L - 1) for rel in [-(L-1), L-1], L = 1000.", "L": L, "tables": {}}
    lengths = [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 400]
    table["checked_lengths"] = lengths
    for b, mx in [(256, 512), (32, 128), (16, 64), (-1, -1)]:
        full = msd.build_relative_position(L, L, bucket_size=b, max_position=mx)[0]
        col = full[:, L - 1]  # rel = i - (L-1): -(L-1) .. 0
        row = full[L - 1, :]  # rel = (L-1) - j: (L-1) .. 0
        vals = torch.cat([col, row.flip(0)[1:]]).tolist()
        assert len(vals) == 2 * L - 1
        lut = torch.tensor(vals)
        # the table is Toeplitz: check it against the function for all the listed sizes
        for n in lengths:
            rp = msd.build_relative_position(n, n, bucket_size=b, max_position=mx)[0]
            i = torch.arange(n)
            assert torch.equal(rp, lut[(i[:, None] - i[None, :]) + L - 1]), (b, mx, n)
        table["tables"][f"b{b}_m{mx}"] = vals
    return table


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regen-audio", action="store_true", help="re-synthesise the speech clips")
    args = ap.parse_args()

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)

    for fname, (sentences, n) in CLIPS.items():
        p = OUT / fname
        if args.regen_audio or not p.exists():
            print(f"synthesising {fname}")
            make_clip(p, sentences, n)
    waves = {fname: read_wav(OUT / fname) for fname in CLIPS}
    for fname, (_, n) in CLIPS.items():
        assert len(waves[fname]) == n, fname

    with open(OUT / "rel_pos.json", "w") as f:
        json.dump(rel_pos_tables(), f, separators=(",", ":"))
        f.write("\n")

    fe = extractor()
    results = []
    for i, case in enumerate(case_list()):
        results.append(run_case(case, 1000 + i, waves, fe))

    # ---- summary
    print()
    print(f"{'case':30s} {'output':18s} {'shape':24s} {'max|x|':>9s}")
    for r in results:
        for k, (shape, mx) in r["tensors"].items():
            print(f"{r['name']:30s} {k:18s} {str(shape):24s} {mx:9.4g}")
        if r["loss"] is not None:
            print(f"{r['name']:30s} {'loss':18s} {'':24s} {r['loss']:9.4g}")
    print()
    print(f"{'case':30s} {'maxp mean':>9s} {'median':>8s} {'max':>7s} {'x unif':>8s} {'H/logN':>7s}  reload")
    for r in results:
        s = r["stats"]
        print(f"{r['name']:30s} {s['max_prob_mean']:9.4f} {s['max_prob_median']:8.4f} {s['max_prob_max']:7.4f} "
              f"{s['max_prob_over_uniform_mean']:8.1f} {s['norm_entropy_mean']:7.3f}  {r['reload']}")
    print()
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            sz = p.stat().st_size
            total += sz
            print(f"{sz:10d}  {p.relative_to(OUT)}")
    print(f"total {total} bytes ({total / 2**20:.2f} MiB)")
    if total > 5 * 10**6:
        print("WARNING: fixtures exceed 5 MB", file=sys.stderr)


if __name__ == "__main__":
    main()
