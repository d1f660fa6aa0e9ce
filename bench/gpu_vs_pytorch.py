#!/usr/bin/env python3
"""GPU forward pass of the sew-d-tiny geometry: `sewd bench --backend gpu` (wgpu) next to
PyTorch eager on CUDA (strict f32, f32 with TF32, fp16), on the same model files and audio.

    python3 bench/gpu_vs_pytorch.py [--runs 10] [--gpu-runs 5] [--device cuda] [--skip-long]

Clips: tests/fixtures/models/speech_16s.wav (16.55 s) and the same audio tiled to 60 s.
For each clip and row it reports the median time, the real-time factor, the achieved
TFLOP/s (FLOPs of one pass counted by torch's FlopCounterMode), the fraction of the card's
peak and the time relative to wgpu; then the wgpu per-kernel profile (`sewd bench
--profile`), and how far the wgpu logits are from PyTorch strict f32.

Progress goes to stderr, the markdown report to stdout and --out-md, everything to --out
(JSON). Every stage is independent: a failing stage is reported and the rest still runs.
Local check without a CUDA card (wgpu then runs on whatever adapter there is, e.g. lavapipe):

    python3 bench/gpu_vs_pytorch.py --device cpu --runs 1 --gpu-runs 1 --skip-long --no-profile
"""
import argparse
import copy
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import Wav2Vec2FeatureExtractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_vs_pytorch import ROOT, TINY, read_wav, tiny_model  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/models/speech_16s.wav"
RATE = 16000
T0 = time.perf_counter()

WGPU = "wgpu Vulkan f32"
F32 = "PyTorch eager f32"
TF32 = "PyTorch eager f32 + TF32"
FP16 = "PyTorch eager fp16"
ROWS = [WGPU, F32, TF32, FP16]


def log(msg):
    print(f"[gpu_vs_pytorch {time.perf_counter() - T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def elapsed():
    return time.perf_counter() - T0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sewd", type=Path, default=ROOT / "target/release/sewd", help="the sewd CLI (default: target/release/sewd)")
    ap.add_argument("--runs", type=int, default=10, help="timed PyTorch runs per row (median), after --warmup")
    ap.add_argument("--warmup", type=int, default=3, help="PyTorch warm-up runs per row")
    ap.add_argument("--gpu-runs", type=int, default=5, help="`sewd bench --runs` (it adds one warm-up run itself)")
    ap.add_argument("--device", default="cuda", help="torch device: cuda (default), cuda:N or cpu (local check)")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache", help="model and wav directory")
    ap.add_argument("--out", type=Path, default=None, help="JSON report (default: CACHE/gpu_vs_pytorch.json)")
    ap.add_argument("--out-md", type=Path, default=None, help="markdown report (default: CACHE/gpu_vs_pytorch.md)")
    ap.add_argument("--skip-long", action="store_true", help="only the 16.55 s clip, not the 60 s one")
    ap.add_argument("--no-profile", action="store_true", help="run `sewd bench` without --profile")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per sewd call (default: 120 on CUDA, 900 on cpu)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="whole-script time budget in seconds (default: 170 on CUDA, none on cpu); "
                         "the 60 s wgpu clip gets fewer runs, or is skipped, if its estimate does not fit")
    ap.add_argument("--peak-tflops-f32", type=float, default=67.0, help="FP32 (non-tensor) peak; H100 and H200 SXM: 67")
    ap.add_argument("--peak-tflops-tf32", type=float, default=494.5, help="TF32 tensor dense peak; H100 and H200 SXM: 494.5")
    ap.add_argument("--peak-tflops-fp16", type=float, default=989.0, help="FP16 tensor dense peak; H100 and H200 SXM: 989")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    if args.timeout is None:
        args.timeout = 120.0 if cuda else 900.0
    if args.budget_s is None:
        args.budget_s = 170.0 if cuda else 0.0
    args.out = args.out or args.cache / "gpu_vs_pytorch.json"
    args.out_md = args.out_md or args.cache / "gpu_vs_pytorch.md"
    args.runs, args.gpu_runs, args.warmup = max(1, args.runs), max(1, args.gpu_runs), max(0, args.warmup)
    return args


# ---------------------------------------------------------------------------------------------
# Machine information


def sh(cmd, timeout=20):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip() if p.returncode == 0 else f"failed (exit {p.returncode}): {(p.stdout + p.stderr).strip()[-500:]}"
    except FileNotFoundError:
        return "not available"
    except Exception as e:  # noqa: BLE001
        return f"failed: {e}"


def machine_info(args):
    info = {
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "transformers": __import__("transformers").__version__,
        "device": args.device,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("WGPU", "VK_", "CUDA_VISIBLE", "NVIDIA", "RUST_LOG"))},
        "nvidia_smi": sh(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv"]),
        "sewd": str(args.sewd),
        "sewd_version": sh([str(args.sewd), "--version"]) if args.sewd.exists() else "missing",
    }
    return info  # torch_gpu is added once the PyTorch stage opens CUDA (after the wgpu runs)


def check_sewd(args):
    if not args.sewd.exists():
        raise SystemExit(f"gpu_vs_pytorch: {args.sewd} does not exist: build it with `cargo build --release` "
                         "(or pass --sewd PATH)")
    src = ROOT / "src"
    if src.is_dir():
        newest = max((p.stat().st_mtime for p in src.rglob("*.rs")), default=0)
        if newest > args.sewd.stat().st_mtime:
            log(f"warning: {args.sewd} is older than src/ (rebuild with `cargo build --release`)")


# ---------------------------------------------------------------------------------------------
# Audio


def write_wav(path: Path, pcm: np.ndarray):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def make_clips(args):
    with wave.open(str(FIXTURE)) as w:
        if (w.getsampwidth(), w.getnchannels(), w.getframerate()) != (2, 1, RATE):
            raise SystemExit(f"gpu_vs_pytorch: {FIXTURE} is not 16 kHz mono int16")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    clips = [("17s", pcm)]
    if not args.skip_long:
        clips.append(("60s", np.resize(pcm, 60 * RATE)))  # np.resize tiles the clip
    out = []
    for name, data in clips:
        path = args.cache / f"speech_{name}.wav"
        write_wav(path, data)
        out.append({"name": name, "wav": path, "audio_s": len(data) / RATE})
        log(f"clip {name}: {path} ({len(data) / RATE:.2f} s)")
    return out


# ---------------------------------------------------------------------------------------------
# sewd (wgpu)


def run_sewd(args, argv, timeout):
    cmd = [str(args.sewd)] + argv
    log("$ " + " ".join(cmd))
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)  # environment forwarded as is
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return {"cmd": cmd, "rc": None, "stdout": "", "stderr": err[-4000:], "wall_s": round(time.perf_counter() - t, 1),
                "error": f"timed out after {timeout:.0f} s (--timeout)"}
    res = {"cmd": cmd, "rc": p.returncode, "stdout": p.stdout[-20000:], "stderr": p.stderr[-4000:],
           "wall_s": round(time.perf_counter() - t, 1)}
    if p.returncode != 0:
        last = p.stderr.strip().splitlines()[-3:] if p.stderr.strip() else ["(no stderr)"]
        res["error"] = f"exit {p.returncode}: " + " | ".join(last)
    return res


def json_lines(stdout):
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def adapter_from(stderr, objs):
    for o in objs:
        for k in ("adapter", "adapter_name"):
            if isinstance(o.get(k), str):
                return o[k]
    for line in stderr.splitlines():
        if "adapter" in line.lower() and not line.startswith("run "):
            return line.strip()
    return None


def sewd_bench(args, clip, runs, timeout):
    base = ["bench", "--backend", "gpu", "--model", str(args.model_dir), "--audio", str(clip["wav"]), "--runs", str(runs)]
    attempts = []
    for profile in ([True, False] if not args.no_profile else [False]):
        res = run_sewd(args, base + (["--profile"] if profile else []), timeout)
        objs = json_lines(res["stdout"])
        res["bench"] = next((o for o in objs if "median_ms" in o), None)
        res["profile"] = next((o for o in objs if "profile" in o), None)
        res["adapter"] = adapter_from(res["stderr"], objs)
        res["with_profile"] = profile
        if res["bench"] is None and "error" not in res:
            res["error"] = "no JSON line with median_ms on stdout"
        if profile and res["bench"] is not None and res["profile"] is None:
            # The timed runs come first: keep them, whatever went wrong with the profiled pass.
            res["profile_error"] = res.pop("error", None) or "ran, but printed no {\"profile\": ...} line"
        attempts.append({k: v for k, v in res.items() if k not in ("stdout",)})
        if res["bench"] is not None:
            break
        log(f"sewd bench{' --profile' if profile else ''} failed: {res['error']}")
        if timeout and "timed out" in res["error"]:
            break  # a rerun would time out again
    final = attempts[-1]
    if len(attempts) > 1 and attempts[0]["with_profile"]:
        final["profile_error"] = f"`sewd bench --profile` failed ({attempts[0].get('error')}); timings are from a run without it"
    if final.get("profile_error"):
        log(f"wgpu {clip['name']} profile: {final['profile_error']}")
    if final["bench"] is not None:
        log(f"wgpu {clip['name']}: median {final['bench']['median_ms']} ms (adapter: {final['adapter'] or 'not printed'})")
    return {"ok": final["bench"] is not None, "attempts": attempts, **{k: final.get(k) for k in ("bench", "profile", "adapter", "error", "profile_error", "with_profile")}}


def sewd_forward(args, clip, timeout):
    npy = args.cache / f"wgpu_logits_{clip['name']}.npy"
    if npy.exists():
        npy.unlink()
    res = run_sewd(args, ["forward", "--backend", "gpu", "--model", str(args.model_dir), "--audio", str(clip["wav"]),
                          "--output", "logits", "--out", str(npy)], timeout)
    if "error" in res:
        return None, res
    try:
        return np.load(npy), res
    except Exception as e:  # noqa: BLE001
        res["error"] = f"could not read {npy}: {e}"
        return None, res


# ---------------------------------------------------------------------------------------------
# PyTorch


def set_tf32(on: bool):
    # The legacy flags (mixing them with the newer fp32_precision API is an error); the newer
    # API only if the legacy one is refused.
    try:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    except Exception:  # noqa: BLE001
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"


def tf32_state():
    try:
        return {"matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32}
    except Exception:  # noqa: BLE001
        return {"matmul.fp32_precision": torch.backends.cuda.matmul.fp32_precision,
                "cudnn.conv.fp32_precision": torch.backends.cudnn.conv.fp32_precision}


def time_torch(model, x, runs, warmup, cuda):
    """Median ms of `model(x).logits`: CUDA events (cuda) or perf_counter (cpu), plus perf_counter with synchronize."""
    events, wall = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x).logits
        if cuda:
            torch.cuda.synchronize()
        for _ in range(runs):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                t = time.perf_counter()
                start.record()
                model(x).logits
                end.record()
                end.synchronize()
                torch.cuda.synchronize()
                wall.append((time.perf_counter() - t) * 1000)
                events.append(start.elapsed_time(end))
            else:
                t = time.perf_counter()
                model(x).logits
                wall.append((time.perf_counter() - t) * 1000)
    med = statistics.median(events or wall)
    return {"median_ms": round(med, 3), "perf_counter_median_ms": round(statistics.median(wall), 3),
            "timer": "cuda.Event" if cuda else "perf_counter", "runs_ms": [round(v, 3) for v in (events or wall)],
            "min_ms": round(min(events or wall), 3)}


def count_flops(model, x):
    # no_grad, not inference_mode: under inference_mode FlopCounterMode breaks the weight-norm
    # parametrization of the positional conv ("'ParametrizedConv1d' object has no attribute 'weight'").
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x).logits
    by_op = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return int(fc.get_total_flops()), by_op


def rel_pos_proj_flops(cfg):
    """FLOPs of projecting the relative-position embeddings through each layer's query/key
    projections: part of every torch pass, independent of the audio length; sewd does it once,
    when it loads the model."""
    span = cfg.position_buckets if cfg.position_buckets > 0 else cfg.max_relative_positions
    if span is None or span < 1:
        span = cfg.max_position_embeddings
    n_proj = len([t for t in cfg.pos_att_type if t in ("c2p", "p2c")])
    return cfg.num_hidden_layers * n_proj * 2 * (2 * span) * cfg.hidden_size * cfg.hidden_size


def torch_rows(args, model32, clips, results):
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(args.model_dir)  # the preprocessor_config the CLI reads
    model16 = None
    for clip in clips:
        r = results["clips"][clip["name"]]
        try:
            audio = read_wav(clip["wav"])
            x = extractor(audio, sampling_rate=RATE, return_tensors="pt").input_values.to(dev)
            set_tf32(False)
            r["flops"], r["flops_by_op"] = count_flops(model32, x)
            r["rel_pos_proj_flops"] = rel_pos_proj_flops(model32.config)
            log(f"torch {clip['name']}: {r['flops'] / 1e9:.1f} GFLOP per pass")
        except Exception as e:  # noqa: BLE001
            r["torch_error"] = f"{type(e).__name__}: {e}"
            log(f"torch {clip['name']}: input/FLOP count failed: {r['torch_error']}")
            continue

        def row(name, model, inp, tf32):
            try:
                set_tf32(tf32)
                t = time_torch(model, inp, args.runs, args.warmup, cuda)
                t["tf32"] = tf32_state()
                r["rows"][name] = t
                log(f"torch {clip['name']} {name}: median {t['median_ms']:.2f} ms (perf_counter {t['perf_counter_median_ms']:.2f} ms)")
            except Exception as e:  # noqa: BLE001
                r["rows"][name] = {"error": f"{type(e).__name__}: {e}"}
                log(f"torch {clip['name']} {name} failed: {r['rows'][name]['error']}")
            finally:
                set_tf32(False)

        row(F32, model32, x, False)
        if clip["name"] == "17s":
            try:
                set_tf32(False)
                with torch.inference_mode():
                    ref = model32(x).logits.float().cpu().numpy()
                results["torch_f32_logits_shape"] = list(ref.shape)
                results["_ref17"] = ref
                if cuda:
                    set_tf32(True)
                    with torch.inference_mode():
                        tl = model32(x).logits.float().cpu().numpy()
                    set_tf32(False)
                    results["torch_tf32_vs_f32_max_abs_diff"] = float(np.abs(tl - ref).max())
            except Exception as e:  # noqa: BLE001
                results["torch_logits_error"] = f"{type(e).__name__}: {e}"
        if cuda:
            row(TF32, model32, x, True)
            try:
                if model16 is None:
                    model16 = copy.deepcopy(model32).half().eval()
                with torch.inference_mode():
                    out16 = model16(x.half()).logits
                r["fp16_logits_finite"] = bool(torch.isfinite(out16).all())
                row(FP16, model16, x.half(), False)
            except Exception as e:  # noqa: BLE001
                r["rows"][FP16] = {"error": f"{type(e).__name__}: {e}"}
        else:
            r["rows"][TF32] = {"skipped": "TF32 is CUDA-only"}
            r["rows"][FP16] = {"skipped": "fp16 is timed on CUDA only"}


# ---------------------------------------------------------------------------------------------
# Report


def derive(args, results, clips):
    peaks = {WGPU: ("f32", args.peak_tflops_f32), F32: ("f32", args.peak_tflops_f32),
             TF32: ("tf32", args.peak_tflops_tf32), FP16: ("fp16", args.peak_tflops_fp16)}
    results["peaks_tflops"] = {"f32": args.peak_tflops_f32, "tf32": args.peak_tflops_tf32, "fp16": args.peak_tflops_fp16}
    for clip in clips:
        r = results["clips"][clip["name"]]
        w = r["rows"].get(WGPU, {})
        wms = w.get("median_ms")
        for name in ROWS:
            row = r["rows"].get(name)
            if not row or row.get("median_ms") is None:
                continue
            ms = row["median_ms"]
            row["rtf"] = round(ms / 1000 / clip["audio_s"], 5)
            kind, peak = peaks[name]
            row["peak_kind"], row["peak_tflops"] = kind, peak
            if r.get("flops"):
                row["tflops"] = round(r["flops"] / (ms / 1000) / 1e12, 4)
                row["pct_of_peak"] = round(100 * row["tflops"] / peak, 3)
            if wms:
                row["time_over_wgpu"] = round(ms / wms, 4)


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def markdown(args, results, clips):
    L = []
    info = results["machine"]
    L.append("# sew-d-tiny forward pass: wgpu vs PyTorch eager")
    L.append("")
    L.append(f"- torch device: `{args.device}`" + (f" ({info.get('torch_gpu')})" if info.get("torch_gpu") else "")
             + f"; torch {info['torch']} (CUDA {info['torch_cuda']}, cuDNN {info['cudnn']}), transformers {info['transformers']}")
    L.append(f"- wgpu adapter (from sewd's stderr): {results.get('wgpu_adapter') or 'not printed by sewd'}; {info['sewd_version']}")
    if info["env"]:
        L.append("- environment: " + ", ".join(f"`{k}={v}`" for k, v in sorted(info["env"].items())))
    L.append(f"- model: sew-d-tiny geometry, random weights, `{args.model_dir}`")
    L.append(f"- runs: PyTorch {args.warmup} warm-up + median of {args.runs}; `sewd bench` 1 warm-up + median of {args.gpu_runs}")
    L.append("")
    L.append("nvidia-smi:")
    L.append("```")
    L.append(info["nvidia_smi"])
    L.append("```")
    L.append("")
    head = ["row", "peak used"]
    for c in clips:
        n = f"{c['audio_s']:.2f} s"
        head += [f"{n} ms", f"{n} RTF", f"{n} TFLOP/s", f"{n} % peak", f"{n} time/wgpu"]
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    p = results["peaks_tflops"]
    peak_label = {WGPU: f"f32 {p['f32']:g}", F32: f"f32 {p['f32']:g}", TF32: f"tf32 {p['tf32']:g}", FP16: f"fp16 {p['fp16']:g}"}
    for name in ROWS:
        cells = [name, peak_label[name]]
        for c in clips:
            row = results["clips"][c["name"]]["rows"].get(name) or {"error": "not run"}
            if row.get("median_ms") is None:
                why = row.get("error") or row.get("skipped") or "not run"
                cells += [why.replace("|", "/")[:80]] + [""] * 4
                continue
            cells += [fmt(row["median_ms"], ".2f"), fmt(row.get("rtf"), ".4f"), fmt(row.get("tflops"), ".3f"),
                      fmt(row.get("pct_of_peak"), ".2f") + ("" if row.get("pct_of_peak") is None else " %"),
                      fmt(row.get("time_over_wgpu"), ".3f")]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("FLOPs per pass (torch FlopCounterMode on the f32 model; matmul/conv/bmm only): "
             + ", ".join(f"{c['audio_s']:.2f} s: " + (f"{results['clips'][c['name']]['flops'] / 1e9:.2f} GFLOP" if results['clips'][c['name']].get('flops') else "–") for c in clips)
             + ". TFLOP/s = FLOPs / median time; % peak compares f32 rows (wgpu included) with the f32 non-tensor peak, "
               "the TF32 row with the TF32 tensor peak, fp16 with the fp16 tensor peak (dense). time/wgpu < 1: faster than wgpu.")
    rel = next((results["clips"][c["name"]].get("rel_pos_proj_flops") for c in clips), None)
    if rel:
        L.append(f"The same count is used for every row, wgpu included, although {rel / 1e9:.2f} GFLOP of it "
                 "(projecting the relative-position embeddings, the same for any length) is done once at load time by sewd.")
    L.append("")
    L.append("Timing: wgpu = `sewd bench` wall clock of one pass including the audio upload and the logits read-back; "
             "PyTorch = CUDA events around `model(input_values).logits` under `inference_mode` (input already on the "
             "device); strict f32 has `matmul.allow_tf32 = cudnn.allow_tf32 = False`. perf_counter + synchronize medians "
             "(cross-check): " + "; ".join(
                 f"{c['audio_s']:.2f} s " + ", ".join(f"{n.replace('PyTorch eager ', '')} {row['perf_counter_median_ms']:.2f} ms"
                                                      for n, row in results["clips"][c["name"]]["rows"].items()
                                                      if row.get("perf_counter_median_ms") is not None)
                 for c in clips))
    recs = [(c["audio_s"], results["clips"][c["name"]]["rows"].get(WGPU, {}).get("sewd_json", {}).get("record_ms")) for c in clips]
    if any(r is not None for _, r in recs):
        L.append("Of the wgpu pass, the host's time to record it (`record_ms`, median): "
                 + "; ".join(f"{a:.2f} s {r:.2f} ms" for a, r in recs if r is not None) + ".")
    bad16 = [c["audio_s"] for c in clips if results["clips"][c["name"]].get("fp16_logits_finite") is False]
    if bad16:
        L.append("")
        L.append("Note: the fp16 logits have inf/NaN for " + ", ".join(f"{a:.2f} s" for a in bad16) + " (random weights); the timing still stands.")
    L.append("")
    ac = results.get("accuracy") or {}
    L.append("## wgpu logits vs PyTorch strict f32 (16.55 s clip)")
    L.append("")
    if ac.get("max_abs_diff") is not None:
        L.append(f"max |wgpu − torch f32| = {ac['max_abs_diff']:.3e}, max |torch f32| = {ac['max_abs_ref']:.3e}, "
                 f"ratio {ac['rel']:.3e} ({'agree' if ac['rel'] is not None and ac['rel'] < 1e-3 else 'DISAGREE'} at 1e-3); "
                 f"CTC argmax agreement {100 * ac['argmax_agreement']:.2f} %; logits shape {ac['shape']}")
        if results.get("torch_tf32_vs_f32_max_abs_diff") is not None:
            L.append(f"(for scale: max |torch TF32 − torch f32| = {results['torch_tf32_vs_f32_max_abs_diff']:.3e})")
    else:
        L.append(f"not compared: {ac.get('error', 'not run')}")
    L.append("")
    for c in clips:
        L.append(f"## wgpu kernel profile, {c['audio_s']:.2f} s clip")
        L.append("")
        w = results["clips"][c["name"]].get("wgpu") or {}
        prof = w.get("profile")
        if not prof or not isinstance(prof.get("profile"), list):
            why = w.get("profile_error") or ("--no-profile" if args.no_profile else w.get("error") or "no profile line (sewd without --profile?)")
            L.append(f"no profile: {why}")
            L.append("")
            continue
        gpu_ms = prof.get("gpu_ms") or sum(k.get("ms", 0) for k in prof["profile"]) or None
        L.append(f"profiled pass {fmt(prof.get('profiled_pass_ms'), '.2f')} ms wall, GPU time {fmt(gpu_ms, '.2f')} ms, "
                 f"{sum(k.get('dispatches', 0) for k in prof['profile'])} dispatches")
        L.append("")
        L.append("| kernel | dispatches | ms | % of gpu_ms |")
        L.append("|---|---:|---:|---:|")
        for k in sorted(prof["profile"], key=lambda k: -(k.get("ms") or 0)):
            pct = 100 * k.get("ms", 0) / gpu_ms if gpu_ms else None
            L.append(f"| {str(k.get('kernel')).replace('|', chr(92) + '|')} | {k.get('dispatches')} | {fmt(k.get('ms'), '.3f')} | {fmt(pct, '.1f')} |")
        L.append("")
    if results.get("errors"):
        L.append("## Errors")
        L.append("")
        for e in results["errors"]:
            L.append(f"- {e}")
        L.append("")
    return "\n".join(L)


def checkpoint(args, results):
    """The JSON so far, in case the whole script is killed before the end."""
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in results.items() if not k.startswith("_")}
        args.out.write_text(json.dumps({**clean, "partial": True}, indent=1, default=str) + "\n")
    except Exception as e:  # noqa: BLE001
        log(f"could not write {args.out}: {e}")


def save(args, results, clips):
    try:
        derive(args, results, clips)
    except Exception as e:  # noqa: BLE001
        results.setdefault("errors", []).append(f"derive: {type(e).__name__}: {e}")
    md = markdown(args, results, clips)
    results["elapsed_s"] = round(elapsed(), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in results.items() if not k.startswith("_")}
    args.out.write_text(json.dumps(clean, indent=1, default=str) + "\n")
    args.out_md.write_text(md + "\n")
    print(md, flush=True)
    log(f"wrote {args.out} and {args.out_md} ({elapsed():.0f} s in all)")


# ---------------------------------------------------------------------------------------------


def on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    signal.signal(signal.SIGTERM, on_sigterm)  # an outer timeout: still write the report
    args = parse_args()
    check_sewd(args)
    args.cache.mkdir(parents=True, exist_ok=True)
    args.model_dir = args.cache / "sewd-tiny"
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine_info(args), "clips": {}, "errors": []}
    log(f"nvidia-smi: {results['machine']['nvidia_smi']}")

    def budget_left():
        return args.budget_s - elapsed() if args.budget_s else float("inf")

    clips = []
    try:
        model32 = tiny_model(args.model_dir).float().eval()  # written on the CPU; CUDA starts after the wgpu runs
        clips = make_clips(args)
        for c in clips:
            results["clips"][c["name"]] = {"audio_s": c["audio_s"], "wav": str(c["wav"]), "rows": {}}

        # wgpu first, before this process opens a CUDA context.
        for c in clips:
            r = results["clips"][c["name"]]
            runs = args.gpu_runs
            short_row = results["clips"]["17s"]["rows"].get(WGPU, {})
            if c["name"] == "60s" and "timed out" in str(short_row.get("error")):
                msg = "60 s wgpu clip skipped: the 16.55 s one timed out"
                r["rows"][WGPU] = {"error": msg}
                results["errors"].append(msg)
                log(msg)
                continue
            if c["name"] == "60s" and args.budget_s:
                short = short_row.get("median_ms")
                if short:  # quadratic attention: a bit worse than linear in length
                    per_pass = short / 1000 * (c["audio_s"] / clips[0]["audio_s"]) * 1.5
                    reserve = 40.0  # PyTorch and the report
                    fits = int((budget_left() - reserve - 5) / per_pass) - 1 - (0 if args.no_profile else 2)
                    if fits < 1:
                        msg = f"60 s wgpu clip skipped: ~{per_pass:.1f} s a pass does not fit the budget ({budget_left():.0f} s left, --budget-s)"
                        r["rows"][WGPU] = {"error": msg}
                        results["errors"].append(msg)
                        log(msg)
                        continue
                    if fits < runs:
                        log(f"60 s wgpu clip: {fits} runs instead of {runs} to fit the budget")
                        runs = fits
            timeout = min(args.timeout, max(30.0, budget_left())) if args.budget_s else args.timeout
            w = sewd_bench(args, c, runs, timeout)
            r["wgpu"] = w
            if w["ok"]:
                r["rows"][WGPU] = {"median_ms": w["bench"]["median_ms"], "runs": runs, "sewd_json": w["bench"]}
                results["wgpu_adapter"] = results.get("wgpu_adapter") or w.get("adapter")
            else:
                r["rows"][WGPU] = {"error": f"sewd bench failed: {w['error']}"}
                results["errors"].append(f"{c['name']} sewd bench: {w['error']} (stderr in the JSON report)")
            if c["name"] == "17s":
                logits, res = sewd_forward(args, c, timeout)
                results["wgpu_forward"] = {k: v for k, v in res.items() if k != "stdout"}
                results["_wgpu17"] = logits
                if logits is None:
                    results["errors"].append(f"sewd forward: {res['error']}")
                results["wgpu_adapter"] = results.get("wgpu_adapter") or adapter_from(res.get("stderr", ""), [])
            checkpoint(args, results)

        # PyTorch.
        try:
            dev = torch.device(args.device)
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("torch.cuda.is_available() is False (no CUDA device for torch; try --device cpu)")
            if dev.type == "cuda":
                results["machine"]["torch_gpu"] = torch.cuda.get_device_name(dev)
                log(f"torch device: {results['machine']['torch_gpu']}")
            model32 = model32.to(dev)
            torch_rows(args, model32, clips, results)
        except Exception as e:  # noqa: BLE001
            results["errors"].append(f"PyTorch: {type(e).__name__}: {e}")
            for c in clips:
                for name in (F32, TF32, FP16):
                    results["clips"][c["name"]]["rows"].setdefault(name, {"error": f"PyTorch failed: {e}"})
            log(f"PyTorch failed: {type(e).__name__}: {e}")
        checkpoint(args, results)
        for c in clips:
            if results["clips"][c["name"]].get("torch_error"):
                results["errors"].append(f"{c['name']} PyTorch: {results['clips'][c['name']]['torch_error']}")

        # Accuracy.
        ref, got = results.get("_ref17"), results.get("_wgpu17")
        if ref is not None and got is not None:
            if ref.shape != got.shape:
                results["accuracy"] = {"error": f"shape mismatch: wgpu {list(got.shape)} vs torch {list(ref.shape)}"}
            else:
                d, m = float(np.abs(got - ref).max()), float(np.abs(ref).max())
                results["accuracy"] = {"max_abs_diff": d, "max_abs_ref": m, "rel": d / m if m else None,
                                       "mean_abs_diff": float(np.abs(got - ref).mean()), "shape": list(ref.shape),
                                       "argmax_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean())}
            log(f"accuracy: {results['accuracy']}")
            rel = results["accuracy"].get("rel")
            if "error" in results["accuracy"] or rel is None or rel >= 1e-3:
                results["errors"].append(f"wgpu logits disagree with PyTorch strict f32: {results['accuracy']}")
        else:
            results["accuracy"] = {"error": "wgpu logits missing (sewd forward failed)" if got is None else "torch f32 logits missing"}
    except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt too: still write what there is)
        results["errors"].append(f"aborted: {type(e).__name__}: {e}")
        log(f"aborted: {type(e).__name__}: {e}")
    save(args, results, clips)
    return 0 if not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
