"""Evaluates the exported models on the held-out test sets through the Rust CLI.

  cargo build --release
  python training/evaluate.py asr   # WER/CER of models/sewd-demo-en on training/data/asr_test
  python training/evaluate.py asr --val --model DIR   # on training/data/asr_val, to choose checkpoints
  python training/evaluate.py asr --by-rank   # also the word error by the word's frequency rank
  python training/evaluate.py asr --stream    # streamed as the demo's microphone is (what streaming costs)
  python training/evaluate.py asr --streams [--stream]   # continuous speech (make_data.py asr-streams)
  python training/evaluate.py kws   # accuracy of models/sewd-demo-kws on training/data/kws_test

Runs e.g. `target/release/sewd transcribe --model models/sewd-demo-en --format jsonl FILES...`
and scores its output against the manifests; writes a JSON summary next to the test set.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "training" / "data"
sys.path.insert(0, str(ROOT / "training"))
from train_asr import edit_distance, edit_table  # noqa: E402


def run_cli(args, chunk=100):
    env = dict(os.environ, RAYON_NUM_THREADS=os.environ.get("RAYON_NUM_THREADS", "1"))
    lines = []
    files = args[-1]
    for i in range(0, len(files), chunk):
        out = subprocess.run(args[:-1] + files[i: i + chunk], capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"sewd failed ({out.returncode}): {out.stderr}")
        lines += [l for l in out.stdout.splitlines() if l.strip()]
    return lines


def norm(t):
    return " ".join(t.lower().split())


def transcribe_heldout(a):
    """The ASR test (or, with a.val, validation) manifest and the CLI's transcript of each clip."""
    test = DATA / ("asr_streams" if a.streams else "asr_val" if a.val else "asr_test")
    if not (test / "manifest.jsonl").exists():
        if a.streams:
            sys.exit(f"{test / 'manifest.jsonl'} is missing: run `make_data.py asr-streams` first")
        sys.exit(f"{test / 'manifest.jsonl'} is missing: run `make_data.py asr --n-train 0"
                 f"{' --n-val 300' if a.val else ''}` first")
    man = [json.loads(l) for l in open(test / "manifest.jsonl")]
    files = [str(test / m["file"]) for m in man]
    stream = ["--stream"] if a.stream else []
    lines = run_cli([a.sewd, "transcribe", "--model", a.model or "models/sewd-demo-en", "--format", "jsonl", *stream, files])
    hyps = {Path(json.loads(l)["file"]).name: json.loads(l)["text"] for l in lines}
    return man, hyps


def wrong_words(ref, hyp):
    """Which reference words a minimal word alignment of hyp does not match exactly."""
    d = edit_table(ref, hyp)
    wrong, i, j = set(range(len(ref))), len(ref), len(hyp)
    while i > 0 and j > 0:
        if d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                wrong.discard(i - 1)
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return wrong


RANK_BINS = [0, 500, 1000, 2000, 4000, 6000, 8000]


def by_rank(man, hyps):
    """Word error of the reference words grouped by their frequency rank in the word list."""
    import common as C
    words, _ = C.word_list(RANK_BINS[-1])
    rank = {w: i for i, w in enumerate(words)}
    tot, err = collections.Counter(), collections.Counter()
    for m in man:
        ref, hyp = norm(m["text"]).split(), norm(hyps[m["file"]]).split()
        wrong = wrong_words(ref, hyp)
        for k, w in enumerate(ref):
            r = rank.get(w, RANK_BINS[-1] - 1)
            lo = max(b for b in RANK_BINS[:-1] if b <= r)
            tot[lo] += 1
            err[lo] += k in wrong
    res = {}
    for lo, hi in zip(RANK_BINS, RANK_BINS[1:]):
        res[f"rank:{lo}-{hi}"] = {"word_error": round(err[lo] / max(tot[lo], 1), 4), "words": tot[lo]}
        print(f"words of rank {lo:4d} to {hi:4d}  word error {100 * err[lo] / max(tot[lo], 1):5.1f}%  n={tot[lo]}")
    return res


def eval_asr(a):
    man, hyps = transcribe_heldout(a)
    tot = collections.defaultdict(lambda: [0, 0, 0, 0, 0, 0])  # word errs, words, char errs, chars, exact, n
    examples = []
    for m in man:
        ref, hyp = norm(m["text"]), norm(hyps[m["file"]])
        we, ce = edit_distance(ref.split(), hyp.split()), edit_distance(ref, hyp)
        for key in ("all", m["condition"] if m["condition"] != "clean" else "clean", "voice:" + m["voice"].split("+")[0]):
            t = tot[key]
            t[0] += we; t[1] += len(ref.split()); t[2] += ce; t[3] += len(ref); t[4] += ref == hyp; t[5] += 1
        if len(examples) < 8:
            examples.append((ref, hyp))
    res = {k: {"wer": round(v[0] / v[1], 4), "cer": round(v[2] / v[3], 4), "exact": round(v[4] / v[5], 3), "n": v[5]}
           for k, v in sorted(tot.items())}
    for k, v in res.items():
        print(f"{k:28s} WER {100 * v['wer']:5.1f}%  CER {100 * v['cer']:5.1f}%  exact {100 * v['exact']:5.1f}%  n={v['n']}")
    for r, h in examples:
        print(f"  REF {r}\n  HYP {h}")
    if a.by_rank:
        res.update(by_rank(man, hyps))
    split = "_streams" if a.streams else "_val" if a.val else ""
    json.dump(res, open(DATA / f"asr{split}{'_stream' if a.stream else ''}_eval.json", "w"), indent=1)


def eval_kws(a):
    test = DATA / "kws_test"
    man = [json.loads(l) for l in open(test / "manifest.jsonl")]
    files = [str(test / m["file"]) for m in man]
    lines = run_cli([a.sewd, "classify", "--model", a.model or "models/sewd-demo-kws", files])
    pred = {}
    for l in lines:
        if l.startswith("{"):
            j = json.loads(l)
            pred[Path(j["file"]).name] = j["label"]
        else:
            f, label = l.split("\t")[:2]
            pred[Path(f).name] = label
    tot = collections.defaultdict(lambda: [0, 0])
    confusions = collections.Counter()
    for m in man:
        ok = pred[m["file"]] == m["label"]
        for key in ("all", "label:" + m["label"], "cond:" + m["condition"]):
            tot[key][0] += ok
            tot[key][1] += 1
        if not ok:
            confusions[(m["label"], pred[m["file"]], m["word"])] += 1
    res = {k: {"accuracy": round(v[0] / v[1], 4), "n": v[1]} for k, v in sorted(tot.items())}
    for k, v in res.items():
        print(f"{k:22s} acc {100 * v['accuracy']:5.1f}%  n={v['n']}")
    print("errors (label, predicted, word):", confusions.most_common(20))
    json.dump(res, open(DATA / "kws_eval.json", "w"), indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["asr", "kws"])
    ap.add_argument("--sewd", default=str(ROOT / "target" / "release" / "sewd"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--val", action="store_true",
                    help="asr: the validation set (make_data.py asr --n-val N), for choosing between checkpoints")
    ap.add_argument("--by-rank", action="store_true",
                    help="asr: also the word error by frequency rank of the word in the 8,000-word list")
    ap.add_argument("--stream", action="store_true",
                    help="asr: transcribe as the demo's microphone does (`sewd transcribe --stream`), to see what streaming costs")
    ap.add_argument("--streams", action="store_true",
                    help="asr: the 30 continuous-speech clips of `make_data.py asr-streams` (11 to 28 s, one voice each); "
                    "with --stream, what streaming costs in steady state")
    a = ap.parse_args()
    if a.streams and (a.val or a.task != "asr"):
        ap.error("--streams: only for the asr task, and not with --val")
    if a.stream and a.task != "asr":
        ap.error("--stream: only for the asr task")
    if a.val and a.task != "asr":
        ap.error("--val: only the asr task has a validation set")
    if a.by_rank and a.task != "asr":
        ap.error("--by-rank: only for the asr task")
    eval_asr(a) if a.task == "asr" else eval_kws(a)
