"""Shared pieces of the synthetic-speech data pipeline (espeak-ng voices, text,
resampling, augmentation, WAV I/O). Everything is 16 kHz mono."""
import io
import re
import subprocess
import wave

import numpy as np

SR = 16000

# The 32-symbol character vocabulary of the asapp/sew-d-* CTC checkpoints.
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L",
         "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]
CHAR2ID = {c: i for i, c in enumerate(VOCAB)}

# espeak-ng English voices (gmw/*; the mbrola voices are not installed) ...
BASE_VOICES = ["en", "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
               "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
# ... and voice variants (espeak-ng --voices=variant); whispering and heavily
# robotic/effect variants are left out.
VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
            "Alex", "Alicia", "Andrea", "Andy", "Annie", "aunty", "belinda", "benjamin", "caleb",
            "david", "ed", "edward", "Gene", "grandma", "grandpa", "iven", "Jacky", "john", "Lee",
            "linda", "max", "Michael", "Mike", "norbert", "paul", "quincy", "rob", "robert",
            "shelby", "steph", "travis", "victor", "zac", "announcer", "Storm", "adam"]


def voice_name(base, variant):
    return base + ("+" + variant if variant else "")


def word_list(n=8000):
    """The n most frequent English words (wordfreq) made only of vocab characters,
    with their frequencies."""
    from wordfreq import top_n_list, word_frequency
    out = []
    for w in top_n_list("en", 3 * n):
        if not re.fullmatch(r"[a-z']+", w) or not re.search(r"[aeiouy]", w):
            continue
        if len(w) == 1 and w not in ("a", "i"):
            continue
        if w.startswith("'") or w.endswith("'") or w.count("'") > 1:
            continue
        out.append(w)
        if len(out) == n:
            break
    freqs = np.array([word_frequency(w, "en") for w in out])
    return out, freqs


class SentenceMaker:
    def __init__(self, n_words=8000, power=0.5):
        self.words, f = word_list(n_words)
        p = f ** power
        self.p = p / p.sum()

    def sentence(self, rng, lo=2, hi=8):
        k = int(rng.integers(lo, hi + 1))
        idx = rng.choice(len(self.words), size=k, p=self.p)
        return " ".join(self.words[i] for i in idx)


def _smooth_lengths(limit=1 << 25):
    """Every length up to limit with no prime factor above 7, ascending."""
    out = [1]
    for p in (2, 3, 5, 7):
        out = [v * p ** k for v in out for k in range(64) if v * p ** k <= limit]
    return np.array(sorted(out), dtype=np.int64)


_SMOOTH = _smooth_lengths()  # numpy's FFT (pocketfft) is fast on these, slow on large prime factors


def smooth_len(n):
    """The smallest length >= n with no prime factor above 7."""
    return int(_SMOOTH[np.searchsorted(_SMOOTH, n)])


def fft_resample(x, n_out):
    """Band-limited resampling of a whole clip to n_out samples (FFT)."""
    n = len(x)
    if n == n_out:
        return x.astype(np.float32)
    X = np.fft.rfft(x.astype(np.float64))
    m = n_out // 2 + 1
    if m <= len(X):
        Y = X[:m].copy()
    else:
        Y = np.zeros(m, dtype=np.complex128)
        Y[: len(X)] = X
    y = np.fft.irfft(Y, n_out) * (n_out / n)
    return y.astype(np.float32)


def espeak(text, voice, rate=175, pitch=50, gap=None):
    """Synthesizes text with espeak-ng; returns float32 samples at 16 kHz."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout"]
    if gap is not None:
        cmd += ["-g", str(gap)]
    cmd.append(text)
    wav = subprocess.run(cmd, capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        sr = w.getframerate()
        n = w.getnframes()
        x = np.frombuffer(w.readframes(n), dtype=np.int16).astype(np.float32) / 32768.0
        if n == 0 or len(x) == 0:  # espeak writes an unknown length when piping
            pass
    if len(x) == 0:
        x = np.frombuffer(wav[44:], dtype=np.int16).astype(np.float32) / 32768.0
    return fft_resample(x, int(round(len(x) * SR / sr)))


def trim(x, thresh=0.01, pad=800):
    idx = np.nonzero(np.abs(x) > thresh * max(np.abs(x).max(), 1e-6))[0]
    if len(idx) == 0:
        return x
    return x[max(0, idx[0] - pad): idx[-1] + pad]


# ---------------------------------------------------------------- augmentation
def colored_noise(rng, n, kind, fast=False):
    """n samples of white, pink or brown noise at unit variance. fast draws a longer stretch
    of a smooth FFT length and cuts it (the same noise statistics, several times quicker
    for clip lengths with large prime factors, but other samples for the same rng)."""
    m = smooth_len(n) if fast else n
    w = rng.standard_normal(m).astype(np.float32)
    if kind == "white":
        return w[:n]
    X = np.fft.rfft(w)
    f = np.arange(len(X), dtype=np.float64)
    f[0] = 1.0
    X = X / (np.sqrt(f) if kind == "pink" else f)
    y = np.fft.irfft(X, m)[:n].astype(np.float32)
    return y / (y.std() + 1e-9)


def add_noise(rng, x, snr_db, fast=False):
    kind = rng.choice(["white", "pink", "brown"])
    nz = colored_noise(rng, len(x), kind, fast)
    px = np.mean(x ** 2) + 1e-9
    nz *= np.sqrt(px / (10 ** (snr_db / 10)))
    return x + nz


def reverb(rng, x, fast=False):
    rt60 = rng.uniform(0.1, 0.5)
    n = int(SR * rt60)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path
    ir = ir / np.sqrt(np.sum(ir ** 2))
    m = len(x) + n - 1
    nfft = smooth_len(m) if fast else 1 << (m - 1).bit_length()  # the same result either way
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[: len(x)]
    return y.astype(np.float32)


def speed(x, factor, fast=False):
    """x played factor times as fast (band-limited). fast pads x with silence to a smooth FFT
    length m and resamples to a smooth length t, the pair (of the next eight m) whose ratio
    m / t is nearest factor: it moves by at most about 0.2%."""
    if not fast:
        return fft_resample(x, int(round(len(x) / factor)))
    best = None
    for m in _SMOOTH[np.searchsorted(_SMOOTH, len(x)):][:8]:
        i = int(np.searchsorted(_SMOOTH, m / factor))
        for t in _SMOOTH[i - 1: i + 1]:
            err = abs(m / t - factor)
            if best is None or err < best[0]:
                best = (err, int(m), int(t))
    _, m, t = best
    y = fft_resample(np.pad(x, (0, m - len(x))), t)
    return y[: int(round(len(x) * t / m))]


P_REVERB = 0.25  # share of clips augment() gives room reverb unless told otherwise


def augment(rng, x, p_noise=0.5, p_reverb=P_REVERB, p_speed=0.4, snrs=(5, 10, 15, 20, 30), fast=False):
    """Random mix of small speed change, cheap reverb, noise at one of several SNRs, and gain.
    fast: the quicker speed change, reverb and noise (training batches; the dev clips keep the exact
    ones so that runs compare)."""
    if rng.random() < p_speed:
        x = speed(x, rng.uniform(0.9, 1.1), fast)
    if rng.random() < p_reverb:
        x = reverb(rng, x, fast)
    if rng.random() < p_noise:
        x = add_noise(rng, x, float(rng.choice(snrs)) + rng.uniform(-2, 2), fast)
    peak = np.abs(x).max() + 1e-9
    x = x / peak * rng.uniform(0.1, 0.95)
    return x.astype(np.float32)


# ------------------------------------------------------------------- file I/O
def to_int16(x):
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def write_wav(path, x):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(to_int16(x).tobytes())


def read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
