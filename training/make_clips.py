"""Candidate clips for tests/bundled_models.rs (clean espeak-ng, 16 kHz 16-bit mono WAV).

  python training/make_clips.py [OUT_DIR]   # default training/data/clip_candidates

Writes en_NN.wav / kws_WORD.wav and candidates.json (file -> spoken text). The test
commits the ones the bundled models get exactly right, renamed.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common as C  # noqa: E402

SENTENCES = [
    ("en-us", "the birch canoe slid on the smooth planks"),
    ("en-gb", "open the door and turn on the light"),
    ("en-us", "we will meet at the station tomorrow morning"),
    ("en-gb-x-rp", "please call me when you get home"),
    ("en-us+f2", "it was a bright cold day in april"),
    ("en-us", "the weather is nice today"),
    ("en-gb+m3", "i would like a cup of coffee"),
    ("en-us", "she had your dark suit in greasy wash water all year"),
    ("en-gb", "the children played in the park after school"),
    ("en-us+f3", "my brother lives in a small house near the river"),
]
KEYWORDS = [("en-gb", "yes"), ("en-us", "stop"), ("en-us+f2", "left"), ("en-gb+m3", "go")]


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    meta = {}
    for i, (voice, text) in enumerate(SENTENCES):
        x = C.trim(C.espeak(text, voice, 160, 50), 0.01, 1600)
        C.write_wav(out / f"en_{i:02d}.wav", 0.8 * x / abs(x).max())
        meta[f"en_{i:02d}.wav"] = {"voice": voice, "text": text, "rate": 160, "pitch": 50}
    for voice, word in KEYWORDS:
        x = C.trim(C.espeak(word, voice, 160, 50), 0.02, 400)
        y = __import__("numpy").zeros(C.SR, dtype="float32")
        off = (C.SR - len(x)) // 2
        y[off: off + len(x)] = x
        C.write_wav(out / f"kws_{word}.wav", 0.8 * y / abs(y).max())
        meta[f"kws_{word}.wav"] = {"voice": voice, "text": word, "rate": 160, "pitch": 50}
    json.dump(meta, open(out / "candidates.json", "w"), indent=1)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data" / "clip_candidates")
