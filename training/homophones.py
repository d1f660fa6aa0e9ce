"""How much of the ASR word error rate no greedy acoustic model can remove: homophones.

The test sentences are random words from the 8,000-word list (common.SentenceMaker), so
nothing in a sentence tells "their" from "there" or "two" from "too". A character CTC model
decoded greedily can at best write the more frequent spelling of each sound; every other
spelling it hears is a word error whatever the model.

  python training/homophones.py floor              # that floor, per espeak-ng base voice
  python training/homophones.py errors [--model DIR] [--val]   # homophone swaps in a model's output

Needs espeak-ng and wordfreq (as make_data.py does); `errors` also the release CLI
(`cargo build --release`), like evaluate.py.
"""
import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import evaluate as E  # noqa: E402


def phonemes(words, voice):
    """espeak-ng's phoneme string of each word, stress and syllable marks dropped."""
    # One word per clause (the full stop) so espeak-ng prints one line per word.
    out = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice], input="".join(w + ".\n" for w in words),
                         capture_output=True, text=True, check=True).stdout
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    if len(lines) != len(words):
        sys.exit(f"espeak-ng {voice} gave {len(lines)} lines for {len(words)} words")
    return [re.sub(r"[',%=]", "", l) for l in lines]


def floor(_):
    words, f = C.word_list(8000)
    p = f ** 0.5  # the sampling weights of common.SentenceMaker
    p = p / p.sum()
    for voice in C.BASE_VOICES:
        groups = collections.defaultdict(list)
        for i, q in enumerate(phonemes(words, voice)):
            groups[q].append(i)
        shared = [g for g in groups.values() if len(g) > 1]
        # Writing the likeliest spelling of each sound errs on the rest of its group's mass.
        wer = sum(p[g].sum() - p[g].max() for g in shared)
        top = sorted(shared, key=lambda g: -p[g].sum())[:6]
        print(f"{voice:16s} floor WER {100 * wer:4.2f}%  ({len(shared)} groups, {100 * sum(p[g].sum() for g in shared):4.1f}%"
              f" of words; e.g. {', '.join('/'.join(words[i] for i in g) for g in top)})")


def align(ref, hyp):
    """Word pairs of a minimum edit alignment; None marks an insertion or a deletion."""
    n, m = len(ref), len(hyp)
    d = [[i + j if i * j == 0 else 0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    pairs, i, j = [], n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1])); i -= 1; j -= 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            pairs.append((ref[i - 1], None)); i -= 1
        else:
            pairs.append((None, hyp[j - 1])); j -= 1
    return pairs[::-1]


def errors(a):
    man, hyps = E.transcribe_heldout(a)
    n_words, subs, other = 0, [], 0
    for m in man:
        ref = E.norm(m["text"]).split()
        n_words += len(ref)
        for r, h in align(ref, E.norm(hyps[m["file"]]).split()):
            if r is not None and h is not None and r != h:
                subs.append((r, h, m["voice"].split("+")[0]))
            elif r is None or h is None:
                other += 1
    vocab = set(C.word_list(8000)[0])
    by_voice = collections.defaultdict(list)
    for r, h, v in subs:
        by_voice[v].append((r, h))
    swaps = []
    for v, pairs in by_voice.items():
        ws = sorted({w for p in pairs for w in p})
        ph = dict(zip(ws, phonemes(ws, v)))
        # A swap: both spellings are list words that this voice says alike.
        swaps += [(r, h) for r, h in pairs if r in vocab and h in vocab and ph[r] == ph[h]]
    print(f"{n_words} words: {len(subs)} substitutions, {other} insertions and deletions "
          f"(WER {100 * (len(subs) + other) / n_words:.1f}%)")
    print(f"homophone swaps {len(swaps)} ({100 * len(swaps) / n_words:.1f}% of words): "
          + ", ".join(f"{r}->{h}" for r, h in swaps))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("floor").set_defaults(run=floor)
    e = sub.add_parser("errors")
    e.add_argument("--sewd", default=str(E.ROOT / "target" / "release" / "sewd"))
    e.add_argument("--model", default="models/sewd-demo-en")
    e.add_argument("--val", action="store_true", help="score the validation set, not the test set")
    e.set_defaults(run=errors)
    a = ap.parse_args()
    a.run(a)


if __name__ == "__main__":
    main()
