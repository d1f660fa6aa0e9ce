"""Trains the small SEWDForCTC character model on the espeak-ng cache (one CPU core).

  OMP_NUM_THREADS=1 nice -n 5 python training/train_asr.py --minutes 45
  python training/export.py asr   # -> models/sewd-demo-en

The learning-rate schedule is tied to wall time (linear warmup over steps, then
cosine decay over the time budget), so the run ends on time whatever the speed.
"""
import argparse
import json
import math
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import common as C  # noqa: E402

DATA = Path(__file__).parent / "data"


def asr_config(**over):
    from transformers import SEWDConfig
    kw = dict(
        vocab_size=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        hidden_size=144, num_hidden_layers=6, num_attention_heads=4, intermediate_size=576,
        squeeze_factor=2, max_position_embeddings=256, position_buckets=64, share_att_key=True,
        relative_attention=True, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
        hidden_act="gelu_python", hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, layer_norm_eps=1e-7,
        # 0.1, not transformers' 0.02: at 0.02 the post-LN encoder's attention starts uniform,
        # its gradients are ~1e-5, and CTC sat on the all-blank plateau (loss ~3.0) even when
        # overfitting 16 clips; at 0.1 the same overfit leaves the plateau within ~150 steps.
        feature_layer_norm_eps=1e-5, initializer_range=0.1,
        feat_extract_norm="group", feat_extract_activation="gelu",
        # 4 conv layers, 20 ms frames (stride 320 like the asapp models), a 64-tap first layer
        conv_dim=[64, 96, 128, 128], conv_stride=[16, 2, 2, 5], conv_kernel=[64, 4, 4, 5], conv_bias=False,
        num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=16,
        apply_spec_augment=True, mask_time_prob=0.02, mask_time_length=5, mask_feature_prob=0.0,
        ctc_loss_reduction="mean", ctc_zero_infinity=True,
    )
    kw.update(over)
    return SEWDConfig(**kw)


def encode(text):
    return [C.CHAR2ID["|" if c == " " else c.upper()] for c in text]


def decode(ids):
    out, prev = [], -1
    for i in ids:
        if i != prev and i >= 4:
            out.append(" " if C.VOCAB[i] == "|" else C.VOCAB[i])
        prev = i
    return " ".join("".join(out).split()).lower()


def edit_table(a, b):
    """d[i][j]: the Levenshtein distance between a[:i] and b[:j] (sequences of words or characters)."""
    d = [[i + j if i == 0 or j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d


def dequantized_state(file):
    """The float32 state dict of an `export.py --int8` checkpoint: `(weight - zero_point) *
    weight_scale` for each quantized layer (one scale per tensor, row or group of columns).
    Read here rather than through transformers, which needs compressed-tensors for it and
    the GPU machine does not have it."""
    from safetensors.torch import load_file

    raw = load_file(str(file))
    state = {}
    for k, v in raw.items():
        if k.endswith(("weight_scale", "weight_zero_point")):
            continue
        scale = raw.get(k + "_scale")
        if scale is not None:
            zero = raw.get(k + "_zero_point")
            scale = scale.float().reshape(-1 if scale.numel() > 1 else 1, 1) if scale.dim() < 2 else scale.float()
            cols = v.shape[1] // scale.shape[1]
            v = v.float() - (zero.float().reshape(scale.shape).repeat_interleave(cols, 1) if zero is not None else 0)
            v = v * scale.repeat_interleave(cols, 1)
        state[k] = v.float()
    return state


def edit_distance(a, b):
    return edit_table(a, b)[len(a)][len(b)]


def load_state(path, model_class=None):
    """A state dict from a run's model.pt or from an exported model directory
    (loaded as model_class, SEWDForCTC by default; its weights may be float16 or
    int8 from `export.py --int8`: training is in float32)."""
    if Path(path).is_dir():
        if "quantization_config" in json.loads((Path(path) / "config.json").read_text()):
            return dequantized_state(Path(path) / "model.safetensors")
        if model_class is None:
            from transformers import SEWDForCTC as model_class
        return {k: v.float() for k, v in model_class.from_pretrained(path).state_dict().items()}
    return torch.load(path, map_location="cpu")


FFN_IN = "sew_d.encoder.encoder.layer.0.intermediate.dense.weight"


def grow_ffn(model, state):
    """Loads `state` into `model`, whose feed-forward layers may be wider than the
    state's. The extra hidden units keep their random input weights and get zero
    output weights, so the grown model computes exactly what the state did and
    the new units start learning from there (Net2Net-style widening).
    Returns whether anything was widened."""
    own, grown = model.state_dict(), False
    for k, v in state.items():
        want = own[k].shape
        if v.shape == want:
            continue
        n = v.shape[0] if k.endswith("intermediate.dense.weight") or k.endswith("intermediate.dense.bias") else None
        if n is not None and v.shape[1:] == want[1:] and n < want[0]:
            state[k] = torch.cat([v, own[k][n:]], 0)
        elif k.endswith("output.dense.weight") and v.shape[0] == want[0] and v.shape[1] < want[1]:
            state[k] = torch.cat([v, torch.zeros(want[0], want[1] - v.shape[1])], 1)
        else:
            raise SystemExit(f"--resume: {k} has shape {tuple(v.shape)}, the model wants {tuple(want)}")
        grown = True
    model.load_state_dict(state)
    return grown


UPSAMPLE = "sew_d.encoder.upsample.projection"


def squeeze_of(state):
    """The squeeze_factor a state dict was trained with (its upsampling projection's shape)."""
    w = state[UPSAMPLE + ".weight"]
    return w.shape[0] // w.shape[1]


def resqueeze(state, factor):
    """Converts a state dict to squeeze_factor `factor`, a divisor of its own. Only the upsampling
    projection's shape depends on it: its output holds one hidden vector per frame of a squeeze
    window, and each new frame gets the mean of the old frames it covers. The pooling, the
    positional convolution (applied at the full frame rate, its stride only picks outputs) and
    the layers keep their weights, but the encoder then sees more, finer frames, so the model's
    function changes and it needs training. Returns whether anything changed."""
    w, b = state[UPSAMPLE + ".weight"], state[UPSAMPLE + ".bias"]
    hidden, old = w.shape[1], squeeze_of(state)
    if old == factor:
        return False
    if factor < 1 or old % factor:
        raise SystemExit(f"--squeeze {factor}: the resumed model squeezes by {old}; "
                         "only a divisor of it keeps the weights meaningful")
    r = old // factor
    state[UPSAMPLE + ".weight"] = w.reshape(factor, r, hidden, hidden).mean(1).reshape(factor * hidden, hidden)
    state[UPSAMPLE + ".bias"] = b.reshape(factor, r, hidden).mean(1).reshape(factor * hidden)
    return True


def native_gelu(model):
    """The config's "gelu_python" (kept, so exported configs match the asapp checkpoints) is
    x/2 * (1 + erf(x/sqrt 2)) in five elementwise torch ops, forward and backward; torch's
    exact-erf GELU is the same function in one fused kernel (a bfloat16 forward and
    backward of a 120 s batch on 2 Xeon cores: 0.94 s -> 0.84 s)."""
    for m in model.modules():
        if hasattr(m, "intermediate_act_fn"):
            m.intermediate_act_fn = torch.nn.GELU()


def cpu_has_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # cannot tell; let the user decide
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_cache(prefix):
    audio = np.load(DATA / f"{prefix}_audio.npy", mmap_mode="r")
    off = np.load(DATA / f"{prefix}_offsets.npy")
    meta = [json.loads(l) for l in open(DATA / f"{prefix}_meta.jsonl")]
    # Views into the memory-mapped int16 file, not copies: the page cache holds what fits and
    # the kernel drops the rest, so a run can use more sets than RAM holds (copies of six
    # 19.6 h sets took 19 of 24 GiB). as_float() converts one clip when it is used; forked
    # workers share the mapping.
    clips = [audio[off[i]: off[i + 1]] for i in range(len(meta))]
    return clips, meta


def as_float(clip):
    return clip.astype(np.float32) / 32768.0


def normalize(x):
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


def make_batches(lengths, max_samples, rng, shuffle=True):
    """Length-bucketed batches of at most max_samples (padded) audio samples
    (shortest first when not shuffled: SortaGrad for the first CTC epoch)."""
    order = np.argsort(np.array(lengths) + rng.uniform(0, 4000, len(lengths)))
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, lengths[i])
        if cur and m * (len(cur) + 1) > max_samples:
            batches.append(cur)
            cur, m = [], lengths[i]
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches


def collate(xs):
    n = max(len(x) for x in xs)
    inp = np.zeros((len(xs), n), dtype=np.float32)
    mask = np.zeros((len(xs), n), dtype=np.int64)
    for i, x in enumerate(xs):
        inp[i, : len(x)] = normalize(x)
        mask[i, : len(x)] = 1
    return torch.from_numpy(inp), torch.from_numpy(mask)


# The training clips and their labels, set before the worker pool forks so the
# workers share them copy-on-write instead of receiving them per batch.
_WORK = {}


def make_batch(job):
    """Augments and pads one batch (in a worker process): numpy arrays only."""
    b, seed = job
    rng = np.random.default_rng(seed)
    xs = [C.augment(rng, as_float(_WORK["clips"][i]), p_reverb=_WORK["p_reverb"], fast=True) for i in b]
    inp, mask = collate(xs)
    lab = [_WORK["labels"][i] for i in b]
    lab_t = np.full((len(b), max(map(len, lab))), -100, dtype=np.int64)
    for i, l in enumerate(lab):
        lab_t[i, : len(l)] = l
    return inp.numpy(), mask.numpy(), lab_t


def batch_stream(pool, fn, jobs, depth):
    """fn(job) for each job in order, at most `depth` ahead in the pool (inline without one)."""
    if pool is None:
        yield from map(fn, jobs)
        return
    jobs, pending = iter(jobs), deque()
    for job in jobs:
        pending.append(pool.apply_async(fn, (job,)))
        if len(pending) >= depth:
            break
    while pending:
        result = pending.popleft().get()
        job = next(jobs, None)
        if job is not None:
            pending.append(pool.apply_async(fn, (job,)))
        yield result


def worker_pool(workers):
    if workers <= 0:
        return None
    import multiprocessing
    return multiprocessing.get_context("fork").Pool(workers)


def aux_ctc_loss(model, logits, mask, labels):
    """CTC loss of the auxiliary head, reduced as SEWDForCTC reduces its own ("mean")."""
    lengths = model._get_feat_extract_output_lengths(mask.sum(-1)).long()
    keep = labels >= 0
    log_probs = torch.log_softmax(logits, -1, dtype=torch.float32).transpose(0, 1)
    return torch.nn.functional.ctc_loss(log_probs, labels.masked_select(keep), lengths, keep.sum(-1),
                                        blank=model.config.pad_token_id, zero_infinity=True)


@torch.no_grad()
def evaluate(model, clips, texts):
    model.eval()
    device = next(model.parameters()).device
    errs = words = cerrs = chars = 0
    for x, t in zip(clips, texts):
        logits = model(torch.from_numpy(normalize(x))[None].to(device)).logits[0]
        hyp = decode(logits.argmax(-1).tolist())
        errs += edit_distance(t.split(), hyp.split())
        words += len(t.split())
        cerrs += edit_distance(t, hyp)
        chars += len(t)
    model.train()
    return errs / words, cerrs / chars, hyp, t


def cpu_state(model):
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


class WeightAverage:
    """Running mean of a model's floating-point weights over the steps it is given (as in stochastic
    weight averaging): late in a run it lands nearer the middle of the basin than the last step does."""

    def __init__(self, model):
        self.n = 0
        self.mean = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in model.state_dict().items()
                     if v.is_floating_point()}

    @torch.no_grad()
    def add(self, model):
        self.n += 1
        for k, v in model.state_dict().items():
            if k in self.mean:
                self.mean[k].add_(v.float() - self.mean[k], alpha=1.0 / self.n)

    def state(self, model):
        """The model's state dict with the averaged weights in place of its own (buffers such as
        integer counters kept), on the CPU."""
        own = cpu_state(model)
        return {k: self.mean[k].cpu().to(v.dtype) if k in self.mean else v for k, v in own.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--batch-seconds", type=float, default=16)
    ap.add_argument("--n-dev", type=int, default=60)
    ap.add_argument("--out", default=str(DATA / "asr_run"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--aux-ctc", type=float, default=0.0,
                    help="weight of an auxiliary CTC loss on the projected conv features (a training-only "
                    "linear head, not exported): it trains the feature encoder to separate characters "
                    "from the first steps, which gets the transformer off the all-blank plateau sooner")
    ap.add_argument("--threads-file", default="",
                    help="a file holding a thread count, re-read every step (to use cores another job frees)")
    ap.add_argument("--resume", default="", help="a whole SEWDForCTC state dict (model.pt) to continue from, "
                    "or an exported model directory such as models/sewd-demo-en")
    ap.add_argument("--ffn", type=int, default=0,
                    help="intermediate_size (default: the resumed model's, else 576); "
                    "larger than the resumed model's widens it (see grow_ffn)")
    ap.add_argument("--squeeze", type=int, default=0,
                    help="squeeze_factor (default: the resumed model's, else 2); a divisor of the resumed "
                    "model's runs the encoder on finer frames (see resqueeze): more compute, the same weights")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast for the forward pass (weights, gradients, optimizer and the CTC "
                    "loss stay float32): 1.3x the steps per second on an AVX512-BF16 CPU; refused on a CPU without it")
    ap.add_argument("--no-spec-augment", action="store_true",
                    help="no SpecAugment time masking while training (with mask_time_prob 0.02 transformers still "
                    "masks at least two 5-frame spans per clip, a fifth of a 1 s clip); the exported weights keep "
                    "masked_spec_embed, so the model loads either way")
    ap.add_argument("--freeze-features", action="store_true",
                    help="keep the conv feature encoder fixed (as transformers' fine-tuning recipes do): no "
                    "backward through the raw-audio convolutions, 1.33x the steps per second on this model")
    ap.add_argument("--seed", type=int, default=0,
                    help="seeds the batch order and augmentation; a new one when resuming on the same "
                    "caches gives the run other batches than the run it continues")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    ap.add_argument("--workers", type=int, default=0, help="processes that augment and pad batches")
    ap.add_argument("--data", default="asr_train", help="cache prefixes under training/data/, comma-separated")
    ap.add_argument("--p-reverb", type=float, default=C.P_REVERB,
                    help=f"share of training clips given room reverb, 0 to 1 (the dev clips keep {C.P_REVERB} so runs compare)")
    ap.add_argument("--average-from", type=float, default=0.0,
                    help="from this fraction of the time budget on, also keep the running mean of the weights "
                    "after each step and save it as model.avg.pt (0: off); export whichever scores better")
    ap.add_argument("--eval-every", type=float, default=600, help="seconds between dev evaluations")
    ap.add_argument("--init", default="", help="state dict whose sew_d.* (encoder) weights start the model, "
                    "e.g. the keyword spotter training/data/kws_run/model.pt")
    a = ap.parse_args()
    if not 0 <= a.p_reverb <= 1:
        ap.error(f"--p-reverb {a.p_reverb}: a share of clips, between 0 and 1")
    if a.squeeze < 0:
        ap.error(f"--squeeze {a.squeeze}: a squeeze factor is a positive number of frames (0: the resumed model's)")
    if not 0 <= a.average_from < 1:
        ap.error(f"--average-from {a.average_from}: a fraction of the time budget, at least 0 and below 1")
    if a.bf16 and a.device == "cpu" and not cpu_has_bf16():
        # without it torch falls back to a scalar bfloat16 GEMM: about 10x slower than float32
        sys.exit("--bf16: this CPU has neither AVX512-BF16 nor AMX-BF16; train in float32 (drop --bf16)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from transformers import SEWDForCTC
    resumed = load_state(a.resume) if a.resume else None
    ffn = a.ffn or (resumed[FFN_IN].shape[0] if resumed else 576)
    squeeze = a.squeeze or (squeeze_of(resumed) if resumed else 2)
    resqueezed = resumed is not None and resqueeze(resumed, squeeze)
    config = asr_config(intermediate_size=ffn, squeeze_factor=squeeze, apply_spec_augment=not a.no_spec_augment)
    model = SEWDForCTC(config)
    if a.init:
        sd = {k: v for k, v in torch.load(a.init, map_location="cpu").items() if k.startswith("sew_d.")}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        print(f"init from {a.init}: missing {missing}", flush=True)
    if a.resume:
        grown = grow_ffn(model, resumed)
        print(f"resumed from {a.resume}" + (f" (feed-forward layers widened to {ffn})" if grown else "")
              + (f" (squeeze factor now {squeeze})" if resqueezed else ""), flush=True)
    native_gelu(model)
    if a.freeze_features:
        model.freeze_feature_encoder()
    nparam = sum(p.numel() for p in model.parameters())
    print(f"params {nparam / 1e6:.2f} M", flush=True)

    if a.bench:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(8, 48000)
        lab = torch.randint(4, 32, (8, 40))
        for i in range(4):
            t = time.time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):  # time what a run would do
                loss = model(x, labels=lab).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            print(f"step 8x3s {time.time() - t:.2f}s", flush=True)
        return

    dev_clips, dev_texts = [], []
    # The dev clips are the last n_dev of the first cache, so adding caches keeps the dev set.
    clips, texts = [], []
    for prefix in a.data.split(","):
        c, meta = load_cache(prefix)
        clips += c
        texts += [m["text"] for m in meta]
        if not dev_texts:
            dev_rng = np.random.default_rng(7)
            dev_clips = [C.augment(dev_rng, as_float(x)) for x in clips[-a.n_dev:]]
            dev_texts = texts[-a.n_dev:]
            clips, texts = clips[: -a.n_dev], texts[: -a.n_dev]
    labels = [encode(t) for t in texts]
    print(f"train clips {len(clips)}, {sum(map(len, clips)) / C.SR / 3600:.2f} h", flush=True)

    # Fork the workers before CUDA starts in this process (they never touch it).
    _WORK.update(clips=clips, labels=labels, p_reverb=a.p_reverb)
    pool = worker_pool(a.workers)
    device = torch.device(a.device)
    model.to(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # training only

    aux_head, aux_features = None, {}
    if a.aux_ctc > 0:
        aux_head = torch.nn.Linear(config.hidden_size, config.vocab_size).to(device)
        # feature_dropout's output: the projected conv features at the frame rate, before squeezing
        model.sew_d.feature_dropout.register_forward_hook(lambda _m, _i, o: aux_features.__setitem__("x", o))

    decay, no_decay = [], []
    for n, p in list(model.named_parameters()) + ([] if aux_head is None else
                                                    [("aux." + n, p) for n, p in aux_head.named_parameters()]):
        (no_decay if p.ndim < 2 or "norm" in n.lower() or n.endswith(".bias") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8)
    budget = a.minutes * 60
    t0 = time.time()
    step = epoch = 0
    last_eval = last_save = t0
    log = open(out / "train.log", "a")
    done = False
    ema = None
    average = WeightAverage(model) if a.average_from > 0 else None
    bad = 0  # non-finite steps in a row
    while not done:
        epoch += 1
        # augmented lengths are within +-10% of the clean ones, so bucket on clean lengths
        batches = make_batches([len(c) for c in clips], int(a.batch_seconds * C.SR), rng, shuffle=epoch > 1 or a.resume != "")
        jobs = [(b, int(rng.integers(2**63))) for b in batches]
        for inp, mask, lab_t in batch_stream(pool, make_batch, jobs, 2 * max(a.workers, 1)):
            frac = (time.time() - t0) / budget
            if frac >= 1:
                done = True
                break
            if a.threads_file and Path(a.threads_file).exists():
                n = int(Path(a.threads_file).read_text().strip() or a.threads)
                if n != torch.get_num_threads():
                    torch.set_num_threads(n)
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * 0.95 + 0.05)
            for g in opt.param_groups:
                g["lr"] = lr
            inp, mask, lab_t = (torch.from_numpy(v).to(device, non_blocking=True) for v in (inp, mask, lab_t))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                loss = model(inp, attention_mask=mask, labels=lab_t).loss
                if aux_head is not None:
                    loss = loss + a.aux_ctc * (1 - frac) * aux_ctc_loss(model, aux_head(aux_features["x"]), mask, lab_t)
            opt.zero_grad()
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            aux_finite = aux_head is None or all(torch.isfinite(p.grad).all() for p in aux_head.parameters())
            if not (torch.isfinite(loss) and torch.isfinite(gn) and aux_finite):
                # One non-finite batch (seen once in bfloat16 autocast, after about 3,690 good steps)
                # would make every weight NaN and the next snapshot would overwrite the last
                # good one, so skip the update; a run of them means the weights diverged.
                bad += 1
                msg = f"step {step}: loss {loss.item()} grad norm {gn.item()} not finite, update skipped"
                print(msg, flush=True)
                log.write(msg + "\n")
                if bad >= 20:
                    raise SystemExit(f"{bad} non-finite steps in a row at step {step}: the weights diverged; "
                                     "lower --lr or drop --bf16")
                continue
            bad = 0
            opt.step()
            step += 1
            if average is not None and frac >= a.average_from:
                average.add(model)
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % 25 == 0:
                msg = f"ep {epoch} step {step} t {time.time() - t0:.0f}s lr {lr:.2e} loss {ema:.3f} gn {gn:.2f}"
                print(msg, flush=True)
                log.write(msg + "\n")
                log.flush()
            now = time.time()
            if now - last_eval > a.eval_every:
                wer, cer, hyp, ref = evaluate(model, dev_clips, dev_texts)
                msg = f"DEV step {step} wer {wer:.3f} cer {cer:.3f} | {ref} -> {hyp}"
                print(msg, flush=True)
                log.write(msg + "\n")
                last_eval = time.time()
            if now - last_save > 300:
                # Keep the previous snapshot too, so one bad save cannot lose a run.
                if (out / "model.pt").exists():
                    (out / "model.pt").replace(out / "model.prev.pt")
                torch.save(cpu_state(model), out / "model.pt")
                if average is not None and average.n:
                    torch.save(average.state(model), out / "model.avg.pt")
                last_save = now
    if pool is not None:
        pool.terminate()
    torch.save(cpu_state(model), out / "model.pt")
    config.save_pretrained(out)
    wer, cer, hyp, ref = evaluate(model, dev_clips, dev_texts)
    msg = f"FINAL step {step} epochs {epoch} time {time.time() - t0:.0f}s dev wer {wer:.3f} cer {cer:.3f}"
    print(msg, flush=True)
    log.write(msg + "\n")
    if average is not None and average.n:
        averaged = average.state(model)
        torch.save(averaged, out / "model.avg.pt")
        model.load_state_dict(averaged)
        wer_avg, cer_avg, _, _ = evaluate(model, dev_clips, dev_texts)
        msg = f"FINAL-AVERAGE of the last {average.n} steps: dev wer {wer_avg:.3f} cer {cer_avg:.3f} (model.avg.pt)"
        print(msg, flush=True)
        log.write(msg + "\n")
    json.dump({"steps": step, "epochs": epoch, "seconds": time.time() - t0, "params": nparam,
               "dev_wer": wer, "dev_cer": cer, "train_clips": len(clips),
               "train_hours": sum(map(len, clips)) / C.SR / 3600}, open(out / "summary.json", "w"))


if __name__ == "__main__":
    main()
