#!/usr/bin/env node
// The same forward pass, side by side in one run: the native CPU backend
// (`sewd bench`, all cores and one thread), the wasm package (pkg/) in
// headless Debian Chromium on its CPU backend (one thread, and the threaded
// module pkg/threads/ on all cores in a Worker; each as the relaxed SIMD build
// that init() picks in Chromium and as the plain one) and on WebGPU, and the peer,
// onnxruntime-web's wasm backend on the same model exported to ONNX
// (bench/export_onnx.py), with one thread and with all cores.
//
//     node bench/browser.mjs [--model DIR] [--audio WAV] [--runs 5] [--gpu-runs 2]
//                            [--timeout 900] [--chromium PATH] [--sewd PATH]
//
// Native: `sewd bench` times the model's forward pass (one warm-up, median
// of --runs). Browser: `rec.transcribe(samples, rate)` timed with
// performance.now() inside the page (one warm-up, median of --runs on the
// CPU backend, of --gpu-runs on WebGPU); that adds normalization, the copy
// into wasm memory and CTC decoding, all small next to the pass. Headless
// Chromium here has no real GPU: WebGPU runs on SwiftShader (a CPU Vulkan),
// so that row measures the GPU code path, not a GPU.
//
// Needs pkg/ (`make pkg`), target/release/sewd (`make cli`), /usr/bin/chromium
// and tests/page/node_modules/playwright-core (no browser is downloaded).
// Files are served by a small server inside this script (127.0.0.1, a free
// port, COOP/COEP headers) from the repository root, with the model directory
// and the decoded audio mounted under /__bench__/. A model without vocab.json
// (bench/.cache/sewd-tiny, written by cpu_vs_pytorch.py) gets the standard
// 32-character CTC vocabulary served in its place so transcribe() can run;
// its text is meaningless, its timing is not.
//
// onnxruntime-web (bench/node_modules, `cd bench && npm ci`) is timed on
// normalization + session.run() over the same samples, in a fresh page per
// thread count (its thread count is fixed once per page). Its logits are
// checked against sewd's forward() before any time is reported.
//
// Prints a table, then one JSON line: native_ms, native_1thread_ms,
// wasm_cpu_ms, wasm_threads_ms (relaxed SIMD), wasm_cpu_plain_ms, wasm_threads_plain_ms,
// webgpu_ms, ort_wasm_1thread_ms, ort_wasm_threads_ms, the
// ratios, the logits' agreement, the .wasm sizes and the WebGPU adapter.

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ORT_DIST = "bench/node_modules/onnxruntime-web/dist";

function parseArgs(argv) {
  const args = {
    model: path.join(ROOT, "bench/.cache/sewd-tiny"),
    audio: path.join(ROOT, "tests/fixtures/models/speech_16s.wav"),
    runs: 5,
    gpuRuns: 2,
    timeout: 900,
    chromium: process.env.CHROMIUM || "/usr/bin/chromium",
    sewd: path.join(ROOT, "target/release/sewd"),
  };
  const names = { "--model": "model", "--audio": "audio", "--runs": "runs", "--gpu-runs": "gpuRuns", "--timeout": "timeout", "--chromium": "chromium", "--sewd": "sewd" };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    if (flag === "-h" || flag === "--help") {
      console.log("usage: node bench/browser.mjs [--model DIR] [--audio WAV] [--runs N] [--gpu-runs N] [--timeout SECONDS_PER_PASS] [--chromium PATH] [--sewd PATH]");
      process.exit(0);
    }
    const key = names[flag];
    if (!key) throw new Error(`unknown argument ${argv[i]} (see --help)`);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
    }
    if (["runs", "gpuRuns", "timeout"].includes(key)) {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${value}`);
      args[key] = n;
    } else {
      args[key] = path.resolve(value);
    }
  }
  return args;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------- audio ---

/** Mono float samples and rate of a PCM (8/16/24/32-bit) or float (32/64-bit) WAV. */
function readWav(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE") throw new Error(`${file}: not a RIFF/WAVE file`);
  let fmt = null;
  let data = null;
  for (let at = 12; at + 8 <= buf.length; ) {
    const id = buf.toString("ascii", at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    const body = at + 8;
    if (id === "fmt ") {
      let format = buf.readUInt16LE(body);
      if (format === 0xfffe && size >= 40) format = buf.readUInt16LE(body + 24); // WAVE_FORMAT_EXTENSIBLE
      fmt = { format, channels: buf.readUInt16LE(body + 2), rate: buf.readUInt32LE(body + 4), bits: buf.readUInt16LE(body + 14) };
    } else if (id === "data") {
      data = buf.subarray(body, Math.min(buf.length, body + size));
    }
    at = body + size + (size & 1);
  }
  if (!fmt || !data) throw new Error(`${file}: no fmt or data chunk`);
  const { format, channels, rate, bits } = fmt;
  const width = bits / 8;
  const read = {
    "1:8": (o) => (data.readUInt8(o) - 128) / 128,
    "1:16": (o) => data.readInt16LE(o) / 32768,
    "1:24": (o) => data.readIntLE(o, 3) / 8388608,
    "1:32": (o) => data.readInt32LE(o) / 2147483648,
    "3:32": (o) => data.readFloatLE(o),
    "3:64": (o) => data.readDoubleLE(o),
  }[`${format}:${bits}`];
  if (!read) throw new Error(`${file}: unsupported WAV format ${format} with ${bits} bits`);
  const frames = Math.floor(data.length / (width * channels));
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += read((i * channels + c) * width);
    samples[i] = s / channels;
  }
  return { samples, rate };
}

// --------------------------------------------------------------- native ---

function runNative(args, extra) {
  const argv = ["bench", "--model", args.model, "--audio", args.audio, "--runs", String(args.runs), ...extra];
  return new Promise((resolve, reject) => {
    const child = spawn(args.sewd, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`sewd ${argv.join(" ")} exited with ${code}:\n${err}${out}`));
      const last = out.trim().split("\n").pop();
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`sewd bench printed no JSON line: ${out}`));
      }
    });
  });
}

// --------------------------------------------------------------- server ---

// The standard wav2vec2/SEW-D LibriSpeech character vocabulary (32 tokens).
const LS_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", ..."ETAONIHSRDLUMWCFGYPBVK'XJQZ"];

function syntheticVocab(modelDir) {
  const config = JSON.parse(fs.readFileSync(path.join(modelDir, "config.json"), "utf8"));
  const n = config.vocab_size;
  if (!Number.isInteger(n) || n < 1) return null;
  const tokens = n <= LS_VOCAB.length ? LS_VOCAB.slice(0, n) : [...LS_VOCAB, ...Array.from({ length: n - LS_VOCAB.length }, (_, i) => `<extra_${i}>`)];
  return JSON.stringify(Object.fromEntries(tokens.map((t, i) => [t, i])));
}

const MIME = {
  ".wasm": "application/wasm",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wav": "audio/wav",
  ".ts": "text/plain; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>sewd browser bench</title>
<script type="module">
  import init, { Recognizer, wasmFeatures } from "/pkg/sewd.js";
  const state = { rec: null, samples: null, rate: 0 };
  // "plain" or "relaxed": that build of a module; undefined: the one init() picks.
  const WASM_FILE = { plain: "sewd_bg.wasm", relaxed: "sewd_relaxed_bg.wasm" };
  window.bench = {
    async setup(simd) {
      await init(simd && { module_or_path: "/pkg/" + WASM_FILE[simd] });
      const r = await fetch("/__bench__/audio.f32");
      if (!r.ok) throw new Error("audio: HTTP " + r.status);
      state.samples = new Float32Array(await r.arrayBuffer());
      state.rate = Number(r.headers.get("x-sample-rate"));
      return { crossOriginIsolated: self.crossOriginIsolated, webgpu: !!navigator.gpu, userAgent: navigator.userAgent, features: wasmFeatures() };
    },
    async adapter() {
      if (!navigator.gpu) return null;
      const a = await navigator.gpu.requestAdapter();
      if (!a) return null;
      const info = a.info || (a.requestAdapterInfo ? await a.requestAdapterInfo() : {});
      return { vendor: info.vendor || "", architecture: info.architecture || "", device: info.device || "", description: info.description || "" };
    },
    async load(backend) {
      state.rec?.free();
      state.rec = null;
      const t0 = performance.now();
      // cache: false keeps same-origin files out of the Cache API, as the demo does.
      state.rec = await Recognizer.load(new URL("/__bench__/model/", location.href).href, { backend, cache: false });
      return { ms: performance.now() - t0, backend: state.rec.backend, head: state.rec.head };
    },
    async once() {
      const rec = state.rec;
      const t0 = performance.now();
      const t = await rec.transcribe(state.samples, state.rate);
      const ms = performance.now() - t0;
      return { ms, backend: rec.backend, fallback: rec.fallbackReason ?? null, text: t.text };
    },
    free() {
      state.rec?.free();
      state.rec = null;
    },
    async logits() {
      const out = await state.rec.forward(state.samples, state.rate);
      return { shape: out.logits.shape, data: Array.from(out.logits.data) };
    },
    // The threaded module (pkg/threads/) on \`threads\` Web Workers: one warm-up and \`runs\` passes in a Worker.
    threaded(threads, runs, simd) {
      return new Promise((resolve, reject) => {
        const w = new Worker("/__bench__/threads-worker.js", { type: "module" });
        w.onmessage = ({ data }) => {
          w.terminate();
          data.error ? reject(new Error(data.error)) : resolve(data);
        };
        w.onerror = (e) => {
          w.terminate();
          reject(new Error(e.message || "the threads worker failed to start"));
        };
        w.postMessage({ threads, runs, file: simd && "/pkg/threads/" + WASM_FILE[simd] });
      });
    },
    // onnxruntime-web: its thread count is read once, so one page per count.
    async ortLoad(threads) {
      const ort = await import("/${ORT_DIST}/ort.wasm.min.mjs");
      ort.env.wasm.wasmPaths = "/${ORT_DIST}/";
      ort.env.wasm.numThreads = threads;
      const t0 = performance.now();
      const session = await ort.InferenceSession.create("/__bench__/model/model.onnx", { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      state.ort = { ort, session };
      return { ms: performance.now() - t0, version: ort.env.versions?.web ?? null, threads: ort.env.wasm.numThreads };
    },
    // What transcribe() does before its model pass (Wav2Vec2FeatureExtractor's
    // normalization), then the pass; the logits only when asked for.
    async ortOnce(withLogits) {
      const { ort, session } = state.ort;
      const x = state.samples;
      const t0 = performance.now();
      let mean = 0;
      for (let i = 0; i < x.length; i++) mean += x[i];
      mean /= x.length;
      let sq = 0;
      for (let i = 0; i < x.length; i++) sq += (x[i] - mean) ** 2;
      const inv = 1 / Math.sqrt(sq / x.length + 1e-7);
      const input = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) input[i] = (x[i] - mean) * inv;
      const out = await session.run({ input_values: new ort.Tensor("float32", input, [1, x.length]) });
      const ms = performance.now() - t0;
      return { ms, shape: out.logits.dims, data: withLogits ? Array.from(out.logits.data) : null };
    },
  };
  window.benchReady = true;
</script>
`;

// The threaded module blocks the thread that calls it while its pool works,
// which a page's main thread may not do: it is timed in a module Worker.
const THREADS_WORKER = `
self.onmessage = async ({ data: { threads, runs, file } }) => {
  try {
    const sewd = await import("/pkg/threads/sewd.js");
    await sewd.default(file && { module_or_path: file });
    await sewd.initThreadPool(threads);
    const r = await fetch("/__bench__/audio.f32");
    const samples = new Float32Array(await r.arrayBuffer());
    const rate = Number(r.headers.get("x-sample-rate"));
    const rec = await sewd.Recognizer.load(new URL("/__bench__/model/", location.href).href, { backend: "cpu", cache: false });
    const times = [];
    let text = null;
    for (let i = 0; i <= runs; i++) {
      const t0 = performance.now();
      text = (await rec.transcribe(samples, rate)).text;
      if (i > 0) times.push(performance.now() - t0);
    }
    const out = await rec.forward(samples, rate);
    self.postMessage({ times, text, features: sewd.wasmFeatures(), logits: { shape: out.logits.shape, data: Array.from(out.logits.data) } });
  } catch (err) {
    self.postMessage({ error: String(err?.message || err) });
  }
};
`;

function startServer(modelDir, audio) {
  const vocabFile = path.join(modelDir, "vocab.json");
  const vocab = fs.existsSync(vocabFile) ? null : syntheticVocab(modelDir);
  const audioBytes = Buffer.from(audio.samples.buffer, audio.samples.byteOffset, audio.samples.byteLength);
  const headers = (type, length) => ({
    "Content-Type": type,
    "Content-Length": String(length),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
  });
  const send = (res, status, type, body, extra = {}) => {
    res.writeHead(status, { ...headers(type, body.length), ...extra });
    res.end(body);
  };
  // A file under `base`, never above it.
  const inside = (base, rel) => {
    const file = path.resolve(base, "." + path.posix.normalize("/" + rel));
    return file === base || file.startsWith(base + path.sep) ? file : null;
  };
  const server = http.createServer((req, res) => {
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      return send(res, 400, "text/plain", Buffer.from("bad URL"));
    }
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "text/plain", Buffer.from("GET only"));
    if (pathname === "/__bench__/" || pathname === "/__bench__/index.html") return send(res, 200, MIME[".html"], Buffer.from(PAGE));
    if (pathname === "/__bench__/threads-worker.js") return send(res, 200, MIME[".js"], Buffer.from(THREADS_WORKER));
    if (pathname === "/__bench__/audio.f32") return send(res, 200, "application/octet-stream", audioBytes, { "X-Sample-Rate": String(audio.rate) });
    if (pathname === "/__bench__/model/vocab.json" && vocab) return send(res, 200, MIME[".json"], Buffer.from(vocab));
    let file;
    if (pathname.startsWith("/__bench__/model/")) file = inside(modelDir, pathname.slice("/__bench__/model/".length));
    else file = inside(ROOT, pathname.slice(1));
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) return send(res, 404, "text/plain", Buffer.from(`${pathname}: not found`));
    const size = fs.statSync(file).size;
    res.writeHead(200, headers(MIME[path.extname(file).toLowerCase()] || "application/octet-stream", size));
    if (req.method === "HEAD") return res.end();
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ server, base: `http://127.0.0.1:${server.address().port}`, syntheticVocab: !!vocab }));
  });
}

// -------------------------------------------------------------- browser ---

function withTimeout(promise, seconds, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${seconds} s (raise --timeout)`)), seconds * 1000);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function launchChromium(args) {
  const require = createRequire(path.join(ROOT, "tests/page/package.json"));
  let chromium;
  try {
    ({ chromium } = require("playwright-core"));
  } catch (e) {
    throw new Error(`playwright-core is not in tests/page/node_modules (cd tests/page && npm ci): ${e.message}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sewd-bench-chromium-"));
  const flags = [
    "--headless=new",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Keep timers and the page at full speed although nothing is visible.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    // WebGPU on SwiftShader (as tests/page/page.test.mjs): no --disable-gpu.
    "--enable-unsafe-webgpu",
  ];
  if (process.getuid?.() === 0) flags.push("--no-sandbox");
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: args.chromium,
    headless: true,
    ignoreDefaultArgs: ["--headless"],
    args: flags,
  });
  const page = context.pages()[0] || (await context.newPage());
  const log = [];
  page.on("console", (m) => log.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
  const close = () => context.close().finally(() => fs.rmSync(dir, { recursive: true, force: true }));
  return { page, log, close, version: context.browser()?.version() };
}

/** Loads the model on `backend`, one warm-up, then `runs` timed transcribe() calls. */
async function benchInPage(page, log, backend, runs, timeout) {
  const fail = (msg) => new Error(`${msg}\n--- page console ---\n${log.join("\n")}`);
  const loaded = await withTimeout(page.evaluate((b) => window.bench.load(b), backend), timeout, `loading on ${backend}`).catch((e) => {
    throw fail(`Recognizer.load(..., {backend: "${backend}"}) failed: ${e.message}`);
  });
  if (loaded.backend !== backend) throw fail(`asked for backend "${backend}", the Recognizer runs on "${loaded.backend}"`);
  if (loaded.head !== "ctc") throw fail(`the model's head is "${loaded.head}", transcribe needs a CTC head`);
  console.error(`  ${backend}: model loaded in ${loaded.ms.toFixed(0)} ms`);
  const times = [];
  let text = null;
  for (let i = 0; i <= runs; i++) {
    const r = await withTimeout(page.evaluate(() => window.bench.once()), timeout, `${backend} pass ${i}`).catch((e) => {
      throw fail(`transcribe on ${backend} failed: ${e.message}`);
    });
    if (r.backend !== backend) throw fail(`the Recognizer left ${backend} for ${r.backend} during the run: ${r.fallback}`);
    console.error(`  ${backend}: ${i === 0 ? "warm-up" : `run ${i}`} ${r.ms.toFixed(1)} ms`);
    if (i > 0) times.push(r.ms);
    text = r.text;
  }
  const logits = backend === "cpu" ? await page.evaluate(() => window.bench.logits()) : null;
  await page.evaluate(() => window.bench.free());
  return { ms: median(times), times, loadMs: loaded.ms, text, logits };
}

/** onnxruntime-web with `threads` threads in a fresh page: load, one warm-up (whose logits are kept), `runs` timed passes. */
async function benchOrtInPage(browser, base, threads, runs, timeout) {
  const { page, log } = browser;
  const fail = (msg) => new Error(`${msg}\n--- page console ---\n${log.join("\n")}`);
  await openBenchPage(page, log, base);
  const loaded = await withTimeout(page.evaluate((n) => window.bench.ortLoad(n), threads), timeout, "onnxruntime-web load").catch((e) => {
    throw fail(`onnxruntime-web InferenceSession.create failed: ${e.message}`);
  });
  console.error(`  onnxruntime-web ${loaded.version}, ${loaded.threads} thread(s): session created in ${loaded.ms.toFixed(0)} ms`);
  const times = [];
  let logits = null;
  for (let i = 0; i <= runs; i++) {
    const r = await withTimeout(page.evaluate((w) => window.bench.ortOnce(w), i === 0), timeout, `onnxruntime-web pass ${i}`).catch((e) => {
      throw fail(`onnxruntime-web session.run failed: ${e.message}`);
    });
    console.error(`  onnxruntime-web ${threads} thread(s): ${i === 0 ? "warm-up" : `run ${i}`} ${r.ms.toFixed(1)} ms`);
    if (i === 0) logits = r;
    else times.push(r.ms);
  }
  return { ms: median(times), times, loadMs: loaded.ms, version: loaded.version, logits };
}

/** Largest |a - b| over the largest |b|: 0 when the two passes agree exactly. */
function logitsError(a, b) {
  if (a.shape.join("x") !== b.shape.join("x")) throw new Error(`sewd logits ${a.shape.join("x")} vs onnxruntime-web ${b.shape.join("x")}`);
  let worst = 0;
  let peak = 0;
  for (let i = 0; i < b.data.length; i++) {
    worst = Math.max(worst, Math.abs(a.data[i] - b.data[i]));
    peak = Math.max(peak, Math.abs(b.data[i]));
  }
  return worst / peak;
}

async function openBenchPage(page, log, base, simd) {
  await page.goto(`${base}/__bench__/`);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 }).catch((e) => {
    throw new Error(`the bench page did not start: ${e.message}\n${log.join("\n")}`);
  });
  return withTimeout(page.evaluate((b) => window.bench.setup(b), simd), 120, "page setup");
}

/** The single-threaded module (in the page) and the threaded one (in a Worker) of one build ("plain" or "relaxed"). */
async function benchWasmCpu(page, log, base, simd, cores, args) {
  const setup = await openBenchPage(page, log, base, simd);
  if (setup.features.relaxedSimd !== (simd === "relaxed")) throw new Error(`asked for the ${simd} build, the page loaded ${JSON.stringify(setup.features)}`);
  console.error(`wasm CPU, ${simd} SIMD, single-threaded module, ${args.runs} runs ...`);
  const single = await benchInPage(page, log, "cpu", args.runs, args.timeout);
  console.error(`wasm CPU, ${simd} SIMD, threaded module on ${cores} threads (in a Worker), ${args.runs} runs ...`);
  const t = await withTimeout(page.evaluate(([n, r, b]) => window.bench.threaded(n, r, b), [cores, args.runs, simd]), args.timeout * (args.runs + 2), "threaded wasm").catch((e) => {
    throw new Error(`the threaded module failed: ${e.message}\n${log.join("\n")}`);
  });
  if (t.features.relaxedSimd !== (simd === "relaxed") || !t.features.threads) throw new Error(`asked for the threaded ${simd} build, the worker loaded ${JSON.stringify(t.features)}`);
  console.error(`  runs ${t.times.map((x) => x.toFixed(1)).join(", ")} ms`);
  return { setup, single, threads: { ms: median(t.times), times: t.times, logits: t.logits } };
}

// ----------------------------------------------------------------- main ---

function checkInputs(args) {
  const need = [
    [args.sewd, "run `make cli`"],
    [path.join(ROOT, "pkg/sewd.js"), "run `make pkg`"],
    [path.join(ROOT, "pkg/sewd_bg.wasm"), "run `make pkg`"],
    [path.join(ROOT, "pkg/threads/sewd_bg.wasm"), "run `make pkg`"],
    [path.join(ROOT, "pkg/sewd_relaxed_bg.wasm"), "run `make pkg`"],
    [path.join(ROOT, "pkg/threads/sewd_relaxed_bg.wasm"), "run `make pkg`"],
    [args.chromium, "install Debian's chromium (scripts/setup.sh)"],
    [path.join(args.model, "config.json"), "create it with bench/cpu_vs_pytorch.py, or pass --model"],
    [path.join(args.model, "model.onnx"), "export it with bench/export_onnx.py (`make bench-browser` does)"],
    [path.join(ROOT, ORT_DIST, "ort.wasm.min.mjs"), "run `cd bench && npm ci`"],
    [args.audio, "pass --audio"],
  ];
  for (const [file, fix] of need) if (!fs.existsSync(file)) throw new Error(`missing ${file}: ${fix}`);
  // pkg/ and the CLI are built separately: say so when pkg/ predates the source.
  const wasmTime = fs.statSync(path.join(ROOT, "pkg/sewd_bg.wasm")).mtimeMs;
  const newer = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".rs") && fs.statSync(p).mtimeMs > wasmTime) newer.push(path.relative(ROOT, p));
    }
  };
  walk(path.join(ROOT, "src"));
  if (newer.length) console.error(`warning: pkg/sewd_bg.wasm is older than ${newer.length} source file(s) (${newer.slice(0, 3).join(", ")}${newer.length > 3 ? ", ..." : ""}): \`make pkg\` (or \`make bench-browser\`) rebuilds it`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  checkInputs(args);
  const audio = readWav(args.audio);
  const audioS = audio.samples.length / audio.rate;
  console.error(`model ${path.relative(ROOT, args.model) || args.model}, audio ${path.relative(ROOT, args.audio)} (${audioS.toFixed(2)} s at ${audio.rate} Hz)`);

  console.error(`native, all cores (${os.availableParallelism?.() ?? os.cpus().length}), ${args.runs} runs ...`);
  const native = await runNative(args, []);
  console.error(`  ${native.median_ms} ms`);
  console.error(`native, 1 thread, ${args.runs} runs ...`);
  const native1 = await runNative(args, ["--threads", "1"]);
  console.error(`  ${native1.median_ms} ms`);

  const { server, base, syntheticVocab: synthetic } = await startServer(args.model, audio);
  if (synthetic) console.error(`note: ${args.model} has no vocab.json; the page gets the standard 32-character CTC vocabulary (text meaningless, timing unaffected)`);
  let browser = null;
  let cpu;
  let plain;
  let gpu;
  let adapter;
  let setup;
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  const ort = {};
  let threads;
  try {
    browser = await launchChromium(args);
    const { page, log } = browser;
    console.error(`Chromium ${browser.version}`);
    plain = await benchWasmCpu(page, log, base, "plain", cores, args);
    const relaxed = await benchWasmCpu(page, log, base, "relaxed", cores, args);
    setup = relaxed.setup;
    if (!setup.crossOriginIsolated) console.error("warning: the page is not cross-origin isolated (COOP/COEP headers missing?)");
    ({ single: cpu, threads } = relaxed);
    adapter = await page.evaluate(() => window.bench.adapter());
    if (!adapter) throw new Error(`Chromium offers no WebGPU adapter (navigator.gpu ${setup.webgpu ? "present" : "missing"})\n${log.join("\n")}`);
    console.error(`WebGPU adapter: ${[adapter.vendor, adapter.architecture, adapter.device, adapter.description].filter(Boolean).join(" / ") || "(no description)"}; ${args.gpuRuns} runs ...`);
    gpu = await benchInPage(page, log, "webgpu", args.gpuRuns, args.timeout);
    if (audio.rate !== 16_000) throw new Error(`the ONNX model takes 16 kHz input; ${args.audio} is ${audio.rate} Hz (pass a 16 kHz --audio)`);
    for (const threads of [1, cores]) {
      console.error(`onnxruntime-web wasm, ${threads} thread(s), ${args.runs} runs ...`);
      ort[threads] = await benchOrtInPage(browser, base, threads, args.runs, args.timeout);
    }
  } finally {
    await browser?.close().catch(() => {});
    server.close();
  }

  const adapterText = [adapter.vendor, adapter.architecture, adapter.device, adapter.description].filter(Boolean).join(" / ") || null;
  const rows = [
    [`native CPU, ${cores} threads`, native.median_ms, args.runs],
    ["native CPU, 1 thread", native1.median_ms, args.runs],
    ["wasm CPU (Chromium, 1 thread)", cpu.ms, args.runs],
    [`wasm CPU (Chromium, ${cores} threads)`, threads.ms, args.runs],
    ["wasm CPU, plain SIMD (1 thread)", plain.single.ms, args.runs],
    [`wasm CPU, plain SIMD (${cores} threads)`, plain.threads.ms, args.runs],
    [`WebGPU (Chromium${adapterText ? `, ${adapterText}` : ""})`, gpu.ms, args.gpuRuns],
    [`onnxruntime-web ${ort[1].version} wasm, 1 thread`, ort[1].ms, args.runs],
    [`onnxruntime-web ${ort[cores].version} wasm, ${cores} threads`, ort[cores].ms, args.runs],
  ];
  // Both must compute the same thing before their times mean anything.
  const agreement = Math.max(logitsError(cpu.logits, ort[1].logits), logitsError(cpu.logits, ort[cores].logits));
  if (!(agreement < 1e-3)) throw new Error(`sewd and onnxruntime-web disagree: logits differ by ${agreement.toExponential(2)} of the largest`);
  // The threads split the same sums' rows and columns, not their terms: the same logits.
  const threadsAgreement = Math.max(logitsError(threads.logits, cpu.logits), logitsError(plain.threads.logits, plain.single.logits));
  if (!(threadsAgreement < 1e-5)) throw new Error(`the threaded and single-threaded modules disagree: logits differ by ${threadsAgreement.toExponential(2)} of the largest`);
  // Fused multiply-adds round once instead of twice: close, not equal.
  const relaxedAgreement = logitsError(cpu.logits, plain.single.logits);
  if (!(relaxedAgreement < 1e-4)) throw new Error(`the relaxed SIMD and plain builds disagree: logits differ by ${relaxedAgreement.toExponential(2)} of the largest`);
  const sizes = { sewd_wasm_bytes: fs.statSync(path.join(ROOT, "pkg/sewd_bg.wasm")).size, sewd_relaxed_wasm_bytes: fs.statSync(path.join(ROOT, "pkg/sewd_relaxed_bg.wasm")).size, sewd_threads_wasm_bytes: fs.statSync(path.join(ROOT, "pkg/threads/sewd_bg.wasm")).size, ort_wasm_bytes: fs.statSync(path.join(ROOT, ORT_DIST, "ort-wasm-simd-threaded.wasm")).size };
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`\n${audioS.toFixed(2)} s of audio, ${path.relative(ROOT, args.model) || args.model}; median of N runs after one warm-up`);
  console.log(`${"".padEnd(w)}  ${"ms".padStart(10)}  ${"RTF".padStart(7)}  ${"× native".padStart(9)}  N`);
  for (const [name, ms, n] of rows) {
    console.log(`${name.padEnd(w)}  ${ms.toFixed(1).padStart(10)}  ${(ms / 1000 / audioS).toFixed(4).padStart(7)}  ${(ms / native.median_ms).toFixed(2).padStart(8)}×  ${n}`);
  }
  console.log(`sewd wasm CPU vs onnxruntime-web wasm: ${(ort[1].ms / cpu.ms).toFixed(2)}× (1 thread each), ${(ort[cores].ms / threads.ms).toFixed(2)}× (${cores} threads each), ${(ort[cores].ms / cpu.ms).toFixed(2)}× (sewd on 1 thread, onnxruntime-web on ${cores}); logits agree to ${agreement.toExponential(1)} of the largest (threaded vs single-threaded sewd: ${threadsAgreement.toExponential(1)})`);
  console.log(`relaxed SIMD vs plain: ${(plain.single.ms / cpu.ms).toFixed(2)}× (1 thread), ${(plain.threads.ms / threads.ms).toFixed(2)}× (${cores} threads); logits agree to ${relaxedAgreement.toExponential(1)} of the largest`);
  console.log(`.wasm: sewd ${(sizes.sewd_wasm_bytes / 1e6).toFixed(2)} MB (threaded ${(sizes.sewd_threads_wasm_bytes / 1e6).toFixed(2)} MB), onnxruntime-web ${(sizes.ort_wasm_bytes / 1e6).toFixed(2)} MB (plus the model: ${(fs.statSync(path.join(args.model, "model.safetensors")).size / 1e6).toFixed(1)} MB safetensors, ${(fs.statSync(path.join(args.model, "model.onnx")).size / 1e6).toFixed(1)} MB ONNX)`);
  if (cpu.text !== gpu.text) console.log("note: the wasm CPU and WebGPU transcripts differ (expected only within GPU tolerance on near-tied frames)");
  console.log(
    JSON.stringify({
      audio_s: round(audioS, 3),
      native_ms: native.median_ms,
      native_1thread_ms: native1.median_ms,
      wasm_cpu_ms: round(cpu.ms, 2),
      wasm_threads_ms: round(threads.ms, 2),
      wasm_threads: cores,
      wasm_cpu_plain_ms: round(plain.single.ms, 2),
      wasm_threads_plain_ms: round(plain.threads.ms, 2),
      plain_over_relaxed_1thread: round(plain.single.ms / cpu.ms, 3),
      plain_over_relaxed_threads: round(plain.threads.ms / threads.ms, 3),
      logits_relaxed_vs_plain: relaxedAgreement,
      webgpu_ms: round(gpu.ms, 2),
      wasm_cpu_over_native: round(cpu.ms / native.median_ms, 3),
      webgpu_over_native: round(gpu.ms / native.median_ms, 3),
      wasm_cpu_over_native_1thread: round(cpu.ms / native1.median_ms, 3),
      ort_wasm_1thread_ms: round(ort[1].ms, 2),
      ort_wasm_threads_ms: round(ort[cores].ms, 2),
      ort_threads: cores,
      ort_version: ort[1].version,
      ort_1thread_over_wasm_cpu: round(ort[1].ms / cpu.ms, 3),
      ort_threads_over_wasm_cpu: round(ort[cores].ms / cpu.ms, 3),
      ort_threads_over_wasm_threads: round(ort[cores].ms / threads.ms, 3),
      logits_threads_vs_1thread: threadsAgreement,
      logits_vs_ort: agreement,
      ...sizes,
      webgpu_adapter: adapterText,
      runs: args.runs,
      gpu_runs: args.gpuRuns,
      chromium: browser.version,
    }),
  );
}

main().catch((e) => {
  console.error(`bench/browser.mjs: ${e.message}`);
  process.exit(1);
});
