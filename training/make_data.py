"""Makes the synthetic espeak-ng data sets under training/data/.

  python training/make_data.py asr   # ASR: train cache (clean, int16 npy) + held-out test WAVs
  python training/make_data.py kws   # keyword spotting: same layout

For a machine with many cores but no wordfreq (the GPU machine), the training
set can be planned here and synthesized there in parallel:

  python training/make_data.py plan-asr --n-train 24000 --seed 7 --out training/data/plan_asr.jsonl
  python training/make_data.py synth training/data/plan_asr.jsonl --prefix asr_gpu --workers 12

`plan-asr --voice-weight en-029=2` draws that base voice twice as often as each other one.

The held-out test sets (and the ASR validation set, `asr --n-val N`) are made first
with fixed seeds; the training sentences exclude every held-out sentence. Test clips go through every base voice in turn (with
random variants, rates and pitches) and get a fixed, seeded augmentation.
Training clips are stored clean; train_*.py augments them on the fly.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common as C  # noqa: E402

DATA = Path(__file__).parent / "data"

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
# homophones / near-homophones of the keywords kept out of `_unknown_`
NOT_UNKNOWN = set(KEYWORDS) | {"know", "knows", "write", "rite", "wright", "yess", "noh", "of", "ups", "goes",
                               "going", "rights", "stops", "lefts", "downs", "offs", "ons", "gone", "yep", "nope"}

TEST_CONDITIONS = ["clean", "clean", "noise20", "noise10", "reverb", "speed_noise"]


def random_voice(rng, base=None, base_p=None):
    """A base voice (drawn with probabilities base_p if given, else uniformly) and a variant."""
    base = base or str(rng.choice(C.BASE_VOICES, p=base_p))
    return C.voice_name(base, str(rng.choice(C.VARIANTS)))


def test_augment(rng, x, cond):
    if cond == "noise20":
        x = C.add_noise(rng, x, 20.0)
    elif cond == "noise10":
        x = C.add_noise(rng, x, 10.0)
    elif cond == "reverb":
        x = C.reverb(rng, x)
    elif cond == "speed_noise":
        x = C.add_noise(rng, C.speed(x, rng.uniform(0.9, 1.1)), 15.0)
    return x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.9)


def synth(text, rng, voice, rate_lo=130, rate_hi=230):
    rate = int(rng.integers(rate_lo, rate_hi + 1))
    pitch = int(rng.integers(20, 81))
    x = C.espeak(text, voice, rate, pitch)
    return x / (np.abs(x).max() + 1e-9) * 0.9, rate, pitch


def save_cache(prefix, clips, meta):
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    np.save(DATA / f"{prefix}_audio.npy", np.concatenate([C.to_int16(c) for c in clips]))
    np.save(DATA / f"{prefix}_offsets.npy", offsets)
    with open(DATA / f"{prefix}_meta.jsonl", "w") as f:
        for m in meta:
            f.write(json.dumps(m) + "\n")


def write_heldout(sm, name, seed, n, exclude):
    """n seeded clips cycling through the base voices and TEST_CONDITIONS, as WAVs plus a
    manifest under training/data/<name>/; returns their sentences."""
    rng = np.random.default_rng(seed)
    out = DATA / name
    out.mkdir(parents=True, exist_ok=True)
    sents = set()
    with open(out / "manifest.jsonl", "w") as man:
        for i in range(n):
            text = sm.sentence(rng)
            while text in sents or text in exclude:
                text = sm.sentence(rng)
            sents.add(text)
            voice = random_voice(rng, C.BASE_VOICES[i % len(C.BASE_VOICES)])
            x, rate, pitch = synth(text, rng, voice)
            cond = TEST_CONDITIONS[i % len(TEST_CONDITIONS)]
            x = test_augment(rng, x, cond)
            fname = f"asr_{i:04d}.wav"
            C.write_wav(out / fname, x)
            man.write(json.dumps({"file": fname, "text": text, "voice": voice, "rate": rate, "pitch": pitch,
                                  "condition": cond}) + "\n")
    print(f"{name}: {n} clips", flush=True)
    return sents


def make_asr(n_train, n_test, n_val):
    sm = C.SentenceMaker()
    test_sents = write_heldout(sm, "asr_test", 1234, n_test, set())
    # The validation set (its own seed, none of the test sentences) is for choosing between
    # checkpoints, so that the test set's figures are not chosen on the test set.
    held_out = test_sents | (write_heldout(sm, "asr_val", 4321, n_val, test_sents) if n_val else set())
    if n_train == 0:  # `--n-train 0` rebuilds only the test set, e.g. on a new machine
        return
    rng = np.random.default_rng(42)
    clips, meta = [], []
    t0 = time.time()
    while len(clips) < n_train:
        text = sm.sentence(rng)
        if text in held_out:
            continue
        voice = random_voice(rng)
        x, rate, pitch = synth(text, rng, voice)
        clips.append(x)
        meta.append({"text": text, "voice": voice, "rate": rate, "pitch": pitch})
        if len(clips) % 1000 == 0:
            print(f"asr train {len(clips)} {time.time() - t0:.0f}s", flush=True)
    save_cache("asr_train", clips, meta)
    hours = sum(len(c) for c in clips) / C.SR / 3600
    print(f"asr train: {len(clips)} clips, {hours:.2f} h", flush=True)


def kws_word(rng, word, voice):
    x, rate, pitch = synth(word, rng, voice, 110, 260)
    x = C.trim(x, 0.02, 400)
    if len(x) > int(0.95 * C.SR):
        x = C.speed(x, len(x) / (0.95 * C.SR))
    return x, rate, pitch


def place(rng, x, n=C.SR):
    out = np.zeros(n, dtype=np.float32)
    off = int(rng.integers(0, n - len(x) + 1))
    out[off: off + len(x)] = x
    return out


def make_kws(n_per_kw, n_unknown, n_test_per_kw, n_test_unknown, n_test_silence):
    words, _ = C.word_list(8000)
    unknown_words = [w for w in words if w not in NOT_UNKNOWN]
    rng = np.random.default_rng(4321)
    # unknown words for test and train are disjoint
    perm = rng.permutation(len(unknown_words))
    test_unknown = [unknown_words[i] for i in perm[:800]]
    train_unknown = [unknown_words[i] for i in perm[800:]]
    out = DATA / "kws_test"
    out.mkdir(parents=True, exist_ok=True)
    items = [(k, k) for k in KEYWORDS for _ in range(n_test_per_kw)]
    items += [("_unknown_", str(rng.choice(test_unknown))) for _ in range(n_test_unknown)]
    items += [("_silence_", None) for _ in range(n_test_silence)]
    with open(out / "manifest.jsonl", "w") as man:
        for i, (label, word) in enumerate(items):
            voice = random_voice(rng, C.BASE_VOICES[i % len(C.BASE_VOICES)])
            cond = TEST_CONDITIONS[i % len(TEST_CONDITIONS)]
            if word is None:
                x = C.colored_noise(rng, C.SR, str(rng.choice(["white", "pink", "brown"])))
                x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.001, 0.3)
                voice, cond = None, "noise"
            else:
                w, _, _ = kws_word(rng, word, voice)
                x = test_augment(rng, place(rng, w), cond)
            name = f"kws_{i:04d}.wav"
            C.write_wav(out / name, x)
            man.write(json.dumps({"file": name, "label": label, "word": word, "voice": voice, "condition": cond}) + "\n")
    print(f"kws test: {len(items)} clips", flush=True)
    rng = np.random.default_rng(99)
    clips, meta = [], []
    todo = [(k, k) for k in KEYWORDS for _ in range(n_per_kw)]
    todo += [("_unknown_", str(rng.choice(train_unknown))) for _ in range(n_unknown)]
    t0 = time.time()
    for label, word in todo:
        voice = random_voice(rng)
        x, rate, pitch = kws_word(rng, word, voice)
        clips.append(x)
        meta.append({"label": label, "word": word, "voice": voice, "rate": rate, "pitch": pitch})
        if len(clips) % 1000 == 0:
            print(f"kws train {len(clips)} {time.time() - t0:.0f}s", flush=True)
    save_cache("kws_train", clips, meta)
    print(f"kws train: {len(clips)} clips", flush=True)


def test_manifest(task):
    path = DATA / f"{task}_test" / "manifest.jsonl"
    if not path.exists():
        sys.exit(f"{path} is missing: run `make_data.py {task}` first (the plan must exclude its test set)")
    return [json.loads(line) for line in open(path)]


def plan_asr(n_train, seed, long_frac, base_p=None):
    """Training sentences and voices only (no audio), test (and validation, if made)
    sentences excluded; long_frac of them 9-20 words, so the model also sees 5-10 s of context.
    base_p: probabilities of the base voices, to give the weakest more clips."""
    held_out = {m["text"] for m in test_manifest("asr")}
    val = DATA / "asr_val" / "manifest.jsonl"
    if val.exists():
        held_out |= {json.loads(line)["text"] for line in open(val)}
    sm = C.SentenceMaker()
    rng = np.random.default_rng(seed)
    plan = []
    while len(plan) < n_train:
        text = sm.sentence(rng, 9, 20) if rng.random() < long_frac else sm.sentence(rng)
        if text in held_out:
            continue
        plan.append({"kind": "asr", "text": text, "voice": random_voice(rng, base_p=base_p),
                     "rate": int(rng.integers(130, 231)), "pitch": int(rng.integers(20, 81))})
    return plan


def plan_kws(n_per_kw, n_unknown, seed):
    """Keyword and unknown-word clips; the unknown words of the test set are excluded."""
    test_words = {m["word"] for m in test_manifest("kws") if m["label"] == "_unknown_"}
    words, _ = C.word_list(8000)
    unknown = [w for w in words if w not in NOT_UNKNOWN and w not in test_words]
    rng = np.random.default_rng(seed)
    todo = [(k, k) for k in KEYWORDS for _ in range(n_per_kw)]
    todo += [("_unknown_", str(rng.choice(unknown))) for _ in range(n_unknown)]
    return [{"kind": "kws", "label": label, "word": word, "voice": random_voice(rng),
             "rate": int(rng.integers(110, 261)), "pitch": int(rng.integers(20, 81))} for label, word in todo]


def synth_item(m):
    """One planned clip, clean, as make_asr / make_kws would have made it."""
    if m["kind"] == "asr":
        x = C.espeak(m["text"], m["voice"], m["rate"], m["pitch"])
        return x / (np.abs(x).max() + 1e-9) * 0.9
    x = C.espeak(m["word"], m["voice"], m["rate"], m["pitch"])
    x = C.trim(x / (np.abs(x).max() + 1e-9) * 0.9, 0.02, 400)
    if len(x) > int(0.95 * C.SR):
        x = C.speed(x, len(x) / (0.95 * C.SR))
    return x


def synth_plan(plan_path, prefix, workers):
    from multiprocessing import Pool
    plan = [json.loads(line) for line in open(plan_path)]
    t0 = time.time()
    with Pool(workers) as pool:
        clips = []
        for i, x in enumerate(pool.imap(synth_item, plan, chunksize=16)):
            clips.append(x)
            if (i + 1) % 2000 == 0:
                print(f"{prefix} {i + 1}/{len(plan)} {time.time() - t0:.0f}s", flush=True)
    save_cache(prefix, clips, [{k: v for k, v in m.items() if k != "kind"} for m in plan])
    hours = sum(len(c) for c in clips) / C.SR / 3600
    print(f"{prefix}: {len(clips)} clips, {hours:.2f} h, {time.time() - t0:.0f}s", flush=True)


def count(text):
    """argparse type for clip counts: 0 or more (0 means none, e.g. `asr --n-train 0`)."""
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; a count of clips is 0 or more")
    return n


def base_voice_probs(specs):
    """`--voice-weight BASE=W` (repeatable; unnamed base voices weigh 1) as probabilities over
    C.BASE_VOICES, or None when none is given so that older plans draw the same voices."""
    if not specs:
        return None
    w = dict.fromkeys(C.BASE_VOICES, 1.0)
    for spec in specs:
        base, _, weight = spec.partition("=")
        if base not in w:
            sys.exit(f"--voice-weight {spec}: {base!r} is not a base voice ({', '.join(C.BASE_VOICES)})")
        try:
            w[base] = float(weight)
        except ValueError:
            w[base] = float("nan")
        if not 0 <= w[base] < float("inf"):  # also false for nan
            sys.exit(f"--voice-weight {spec}: the weight must be a finite number >= 0, as in {base}=2")
    total = sum(w.values())
    if total == 0:
        sys.exit("--voice-weight: every base voice weighs 0")
    return [w[b] / total for b in C.BASE_VOICES]


def make_asr_streams(n_streams=30, per_stream=10):
    """training/data/asr_streams/: continuous speech for the streaming evaluation
    (`evaluate.py asr --streams`): stream k is one voice (that of validation clip
    10k, at its rate and pitch) reading validation sentences 10k..10k+9 in one
    espeak-ng call, with the sentence pauses espeak-ng makes; clean, no augmentation."""
    val = DATA / "asr_val" / "manifest.jsonl"
    if not val.exists():
        sys.exit(f"{val} is missing: run `make_data.py asr --n-train 0 --n-val 300` first")
    man = [json.loads(l) for l in open(val)]
    if len(man) < n_streams * per_stream:
        sys.exit(f"{val}: {len(man)} clips, the streams need {n_streams * per_stream}")
    out = DATA / "asr_streams"
    out.mkdir(exist_ok=True)
    with open(out / "manifest.jsonl", "w") as f:
        for k in range(n_streams):
            ms = man[k * per_stream:(k + 1) * per_stream]
            x = C.espeak(". ".join(m["text"] for m in ms) + ".", ms[0]["voice"], rate=ms[0]["rate"], pitch=ms[0]["pitch"])
            name = f"stream_{k:02d}.wav"
            C.write_wav(out / name, x)
            f.write(json.dumps({"file": name, "text": " ".join(m["text"] for m in ms), "voice": ms[0]["voice"],
                                "condition": "clean", "seconds": round(len(x) / C.SR, 2)}) + "\n")
    print(f"asr-streams: {n_streams} streams -> {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["asr", "asr-streams", "kws", "plan-asr", "plan-kws", "synth"])
    ap.add_argument("plan", nargs="?", help="synth: the plan file to synthesize")
    ap.add_argument("--n-train", type=count, default=10000)
    ap.add_argument("--n-test", type=count, default=300)
    ap.add_argument("--n-val", type=count, default=0,
                    help="asr: also this many validation clips (training/data/asr_val, seed 4321)")
    ap.add_argument("--n-per-kw", type=count, default=1200)
    ap.add_argument("--n-unknown", type=count, default=4800)
    ap.add_argument("--long-frac", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--voice-weight", action="append", default=[], metavar="BASE=W",
                    help="plan-asr: draw base voice BASE W times as often as the others (repeatable)")
    ap.add_argument("--out", help="plan-*: where to write the plan (jsonl)")
    ap.add_argument("--prefix", help="synth: cache name under training/data/, e.g. asr_gpu")
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    if a.voice_weight and a.task != "plan-asr":
        sys.exit(f"--voice-weight is for plan-asr, not {a.task}")
    DATA.mkdir(exist_ok=True)
    if a.task == "asr":
        make_asr(a.n_train, a.n_test, a.n_val)
    elif a.task == "asr-streams":
        make_asr_streams()
    elif a.task == "kws":
        make_kws(n_per_kw=400, n_unknown=1600, n_test_per_kw=40, n_test_unknown=80, n_test_silence=40)
    elif a.task == "synth":
        if not a.plan or not a.prefix:
            sys.exit("synth needs a plan file and --prefix")
        synth_plan(a.plan, a.prefix, a.workers)
    else:
        if not a.out:
            sys.exit(f"{a.task} needs --out FILE")
        if a.task == "plan-asr":
            plan = plan_asr(a.n_train, a.seed, a.long_frac, base_voice_probs(a.voice_weight))
        else:
            plan = plan_kws(a.n_per_kw, a.n_unknown, a.seed)
        with open(a.out, "w") as f:
            for m in plan:
                f.write(json.dumps(m) + "\n")
        print(f"{a.task}: {len(plan)} clips -> {a.out}")
