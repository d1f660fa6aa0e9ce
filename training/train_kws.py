"""Trains the SEWDForSequenceClassification keyword spotter.

  python training/train_kws.py --minutes 12 --threads 2
  python training/export.py kws   # -> models/sewd-demo-kws

The encoder starts from the trained ASR model (training/data/asr_run/model.pt,
same geometry) when it exists, which makes the classifier converge in minutes.
Classes: the ten Speech Commands words, `_unknown_` (other words) and `_silence_`
(noise or near-silence, generated on the fly).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import common as C  # noqa: E402
from make_data import KEYWORDS, place  # noqa: E402
from train_asr import DATA, as_float, asr_config, batch_stream, collate, cpu_state, load_cache, load_state, worker_pool  # noqa: E402

LABELS = KEYWORDS + ["_unknown_", "_silence_"]


def kws_config():
    return asr_config(
        num_labels=len(LABELS), id2label={i: l for i, l in enumerate(LABELS)},
        label2id={l: i for i, l in enumerate(LABELS)}, classifier_proj_size=128,
        use_weighted_layer_sum=False, mask_time_prob=0.05, mask_time_length=3)


def silence(rng):
    x = C.colored_noise(rng, C.SR, str(rng.choice(["white", "pink", "brown"])))
    x = x / (np.abs(x).max() + 1e-9) * 10 ** rng.uniform(-3.5, -0.5)
    if rng.random() < 0.3:  # quiet hum
        t = np.arange(C.SR) / C.SR
        x = x + 10 ** rng.uniform(-3, -1) * np.sin(2 * np.pi * rng.choice([50, 60]) * t + rng.uniform(0, 6))
    return x.astype(np.float32)


# Clips and items, set before the worker pool forks (shared copy-on-write).
_WORK = {}


def make_batch(job):
    """One augmented batch of 1 s inputs and their class ids (in a worker process)."""
    idx, seed = job
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for j in idx:
        y, i = _WORK["items"][j]
        if i < 0:
            x = silence(rng)
        else:
            x = C.augment(rng, place(rng, as_float(_WORK["clips"][i][: C.SR])), p_speed=0.0)
            if len(x) != C.SR:
                x = np.pad(x, (0, max(0, C.SR - len(x))))[: C.SR]
        xs.append(x)
        ys.append(y)
    inp, _ = collate(xs)
    return inp.numpy(), np.array(ys, dtype=np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--init", default=str(DATA / "asr_run" / "model.pt"))
    ap.add_argument("--out", default=str(DATA / "kws_run"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", default="", help="a whole state dict (encoder and head, model.pt) to continue "
                    "from, or an exported model directory such as models/sewd-demo-kws")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    ap.add_argument("--workers", type=int, default=0, help="processes that augment batches")
    ap.add_argument("--data", default="kws_train", help="cache prefix under training/data/")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from transformers import SEWDForSequenceClassification
    config = kws_config()
    model = SEWDForSequenceClassification(config)
    if Path(a.init).exists():
        sd = {k: v for k, v in torch.load(a.init, map_location="cpu").items() if k.startswith("sew_d.")}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        print(f"init from {a.init}: missing {missing}", flush=True)
    if a.resume:
        model.load_state_dict(load_state(a.resume, SEWDForSequenceClassification))
        print(f"resumed from {a.resume}", flush=True)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"params {nparam / 1e6:.2f} M", flush=True)

    clips, meta = load_cache(a.data)
    items = [(LABELS.index(m["label"]), i) for i, m in enumerate(meta)]
    n_sil = len(items) // 11
    items += [(LABELS.index("_silence_"), -1)] * n_sil
    print(f"train items {len(items)}", flush=True)

    # Fork the workers before CUDA starts in this process (they never touch it).
    _WORK.update(clips=clips, items=items)
    pool = worker_pool(a.workers)
    device = torch.device(a.device)
    model.to(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # training only
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    budget = a.minutes * 60
    t0 = time.time()
    step = epoch = 0
    done = False
    ema_loss = ema_acc = None
    while not done:
        epoch += 1
        perm = rng.permutation(len(items))
        jobs = [(perm[s: s + a.batch], int(rng.integers(2**63))) for s in range(0, len(perm) - a.batch + 1, a.batch)]
        for inp, ys in batch_stream(pool, make_batch, jobs, 2 * max(a.workers, 1)):
            frac = (time.time() - t0) / budget
            if frac >= 1:
                done = True
                break
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.5 * (1 + math.cos(math.pi * frac)) * 0.95 + 0.05)
            for g in opt.param_groups:
                g["lr"] = lr
            inp, labels = torch.from_numpy(inp).to(device), torch.from_numpy(ys).to(device)
            outp = model(inp, labels=labels)
            opt.zero_grad()
            outp.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            acc = (outp.logits.argmax(-1) == labels).float().mean().item()
            ema_loss = outp.loss.item() if ema_loss is None else 0.95 * ema_loss + 0.05 * outp.loss.item()
            ema_acc = acc if ema_acc is None else 0.95 * ema_acc + 0.05 * acc
            if step % 20 == 0:
                print(f"ep {epoch} step {step} t {time.time() - t0:.0f}s lr {lr:.2e} loss {ema_loss:.3f} acc {ema_acc:.3f}",
                      flush=True)
            if step % 200 == 0:
                torch.save(cpu_state(model), out / "model.pt")
    if pool is not None:
        pool.terminate()
    torch.save(cpu_state(model), out / "model.pt")
    config.save_pretrained(out)
    json.dump({"steps": step, "epochs": epoch, "seconds": time.time() - t0, "params": nparam,
               "train_clips": len(clips), "train_acc_ema": ema_acc}, open(out / "summary.json", "w"))
    print(f"FINAL step {step} epochs {epoch} train acc (ema) {ema_acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
