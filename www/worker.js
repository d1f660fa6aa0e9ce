// The model worker: every Recognizer call runs here, so the page never blocks.
//
// Messages from the page carry `{ id, type, ... }` (`id` is the request's;
// a microphone session's id travels as `session`) and get one reply
// `{ id, type: "done", result }` or `{ id, type: "error", message }`;
// progress, partial text and timings arrive as events without an id.
// Microphone audio comes from the capture worklet on a port of its own
// (type "mic-port"), so it never waits on the main thread.

const PKG = new URL("../pkg/sewd.js", import.meta.url).href;
const PKG_THREADS = new URL("../pkg/threads/sewd.js", import.meta.url).href;
// The CPU backend's threads: ?threads=N on this worker's URL (the page passes
// its own), else one per core up to MAX_THREADS. More than one needs the
// threaded module, which needs a cross-origin isolated page (shared memory).
const MAX_THREADS = 8;
const MAX_ASKED_THREADS = 64;
// wasm-bindgen-rayon waits for every pool worker to report ready and has no
// error path: a worker that never starts (a CSP refusing blob: workers, out
// of memory) would hang the load, so the pool gets this long before the
// single-threaded module is used instead.
const POOL_START_MS = 20_000;
const cpu = { threads: 1, asked: 1, why: null, module: null, simd: null }; // why: how the count was chosen
const models = { asr: null, kws: null }; // slot -> Recognizer
let mic = null; // the latest microphone session, see startStream

// A Recognizer is borrowed by Rust while one of its async calls runs, and
// free() then throws (and leaves the handle dead). A model replaced during a
// call is freed when its last call ends.
const inUse = new Map(); // Recognizer -> calls in flight
const retired = new Set();

async function using(rec, call) {
  inUse.set(rec, (inUse.get(rec) || 0) + 1);
  try {
    return await call(rec);
  } finally {
    const left = inUse.get(rec) - 1;
    if (left > 0) inUse.set(rec, left);
    else {
      inUse.delete(rec);
      if (retired.delete(rec)) rec.free?.();
    }
  }
}

function retire(rec) {
  if (!rec) return;
  if (inUse.has(rec)) retired.add(rec);
  else rec.free?.();
}

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

function wantedThreads() {
  const asked = new URL(self.location.href).searchParams.get("threads");
  if (asked !== null) {
    const n = Number(asked);
    if (!Number.isInteger(n) || n < 1 || n > MAX_ASKED_THREADS) {
      throw new Error(`threads=${asked}: a whole number of threads from 1 to ${MAX_ASKED_THREADS}`);
    }
    return { n, why: "asked for" };
  }
  const cores = self.navigator?.hardwareConcurrency || 1;
  return { n: Math.min(cores, MAX_THREADS), why: cores > MAX_THREADS ? `${cores} cores, at most ${MAX_THREADS} threads` : "one per core" };
}

// Each module comes in two builds: init() loads the relaxed SIMD one (fused
// multiply-adds) where the browser compiles it. ?simd=plain or ?simd=relaxed on
// this worker's URL loads that build instead.
function wantedBuild() {
  const asked = new URL(self.location.href).searchParams.get("simd");
  if (asked === null) return undefined;
  if (asked !== "plain" && asked !== "relaxed") throw new Error(`simd=${asked}: "plain" or "relaxed"`);
  return asked;
}

function init(mod, pkgUrl, build) {
  const file = { plain: "sewd_bg.wasm", relaxed: "sewd_relaxed_bg.wasm" }[build];
  return mod.default(file && { module_or_path: new URL(file, pkgUrl) });
}

// Messages are handled concurrently (a keyword model may load while the
// speech model does): every caller shares one start of the module and pool.
let starting = null;
function api() {
  starting ??= start().catch((err) => {
    starting = null; // a later call may try again
    throw err;
  });
  return starting;
}

function withinPoolStart(promise, n) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`its ${n} workers did not start within ${POOL_START_MS / 1000} s`)), POOL_START_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function start() {
  const want = wantedThreads();
  const build = wantedBuild();
  let why = want.why;
  if (want.n > 1 && !self.crossOriginIsolated) {
    why = "the page is not cross-origin isolated (it needs the COOP and COEP headers), so no shared memory";
  } else if (want.n > 1) {
    try {
      const mod = await import(PKG_THREADS);
      await init(mod, PKG_THREADS, build);
      await withinPoolStart(mod.initThreadPool(want.n), want.n);
      Object.assign(cpu, { threads: want.n, asked: want.n, why, module: "threads", simd: simdOf(mod) });
      return mod;
    } catch (err) {
      // A browser without wasm threads, or a build without pkg/threads/: one thread works everywhere.
      why = `the threaded module failed (${err?.message || err})`;
    }
  }
  let mod;
  try {
    mod = await import(PKG);
  } catch (err) {
    throw new Error(`could not load the wasm package (${PKG}): ${err?.message || err}. Build it with \`make pkg\`.`);
  }
  try {
    await init(mod, PKG, build);
  } catch (err) {
    // ?simd=relaxed in a browser without relaxed SIMD ends here.
    throw new Error(`could not start the wasm module${build ? ` (simd=${build})` : ""}: ${err?.message || err}`);
  }
  Object.assign(cpu, { threads: 1, asked: want.n, why, module: "single", simd: simdOf(mod) });
  return mod;
}

const simdOf = (mod) => (mod.wasmFeatures().relaxedSimd ? "relaxed" : "plain");

async function webgpuState() {
  const gpu = self.navigator?.gpu;
  if (!gpu) return "this browser has no WebGPU (navigator.gpu is missing)";
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) return "WebGPU is present but offered no GPU adapter";
    // The Recognizer's "auto" prefers the CPU to a software adapter (slower).
    const info = adapter.info || {};
    if (info.isFallbackAdapter ?? adapter.isFallbackAdapter) return `software: ${info.architecture || "fallback adapter"}`;
    return "ok";
  } catch (err) {
    return `WebGPU adapter request failed: ${err?.message || err}`;
  }
}

// Local files have no URL the loader can append file names to: serve them to
// the Recognizer from memory through a same-origin path this worker answers.
const LOCAL_BASE = new URL("/__sewd_local__/", self.location.href).href;
let localFiles = null;
const realFetch = self.fetch.bind(self);
self.fetch = (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input?.url;
  if (localFiles && url && url.startsWith(LOCAL_BASE)) {
    const name = decodeURIComponent(url.slice(LOCAL_BASE.length).split(/[?#]/)[0]);
    const file = localFiles.get(name);
    if (!file) return Promise.resolve(new Response(`${name}: not in the chosen folder`, { status: 404, statusText: "Not Found" }));
    return Promise.resolve(new Response(file, { status: 200, headers: { "Content-Length": String(file.size) } }));
  }
  return realFetch(input, init);
};

async function load({ slot, source, backend }) {
  const { Recognizer } = await api();
  const gpu = backend === "cpu" ? "not requested" : await webgpuState();
  const options = {
    backend,
    onProgress: (loaded, total, file, cached) => post({ type: "progress", slot, loaded, total, file, cached }),
    // Same-origin models (the bundled one, the local server) cost nothing to
    // fetch again: keeping a second copy in the Cache API would only use the
    // visitor's disk. Hub and other remote models are cached (and revalidated
    // on each load, so one pushed again is downloaded again).
    cache: source.kind === "hub" || (source.kind === "url" && new URL(source.ref).origin !== self.location.origin),
  };
  if (source.endpoint) options.endpoint = source.endpoint;
  let rec;
  if (source.kind === "files") {
    // Files keep their folder-relative names; the model files sit at the top
    // of the chosen folder (or one level down when a parent was chosen).
    const map = new Map();
    for (const f of source.files) {
      const rel = f.webkitRelativePath || f.name;
      map.set(rel.split("/").slice(1).join("/") || f.name, f);
      map.set(f.name, map.get(f.name) || f);
    }
    if (typeof Recognizer.fromFiles === "function") {
      rec = await Recognizer.fromFiles(source.files, options);
    } else {
      localFiles = map;
      rec = await Recognizer.load(LOCAL_BASE, options);
    }
  } else {
    rec = await Recognizer.load(source.ref, options);
  }
  const old = models[slot];
  models[slot] = rec;
  retire(old);
  return { backend: rec.backend, gpu, threads: cpu.threads, threadsAsked: cpu.asked, threadsWhy: cpu.why, wasm: cpu.module, simd: cpu.simd };
}

function need(slot) {
  const rec = models[slot];
  if (!rec) throw new Error(slot === "kws" ? "no keyword model loaded" : "no speech model loaded");
  return rec;
}

function plain(words) {
  return Array.from(words || [], (w) => ({ word: w.word, start: w.start, end: w.end }));
}

async function transcribe({ samples, sampleRate }) {
  const rec = need("asr");
  const t0 = performance.now();
  const r = await using(rec, () => rec.transcribe(samples, sampleRate));
  const ms = performance.now() - t0;
  const seconds = samples.length / sampleRate;
  return { text: r.text, words: plain(r.words), ms, seconds, rtf: ms / 1000 / seconds };
}

async function classify({ samples, sampleRate }) {
  const rec = need("kws");
  const t0 = performance.now();
  const r = await using(rec, () => rec.classify(samples, sampleRate));
  let scores = r.scores;
  if (scores && !Array.isArray(scores)) scores = Object.entries(scores instanceof Map ? Object.fromEntries(scores) : scores);
  scores = Array.from(scores || [], (s) => (Array.isArray(s) ? { label: s[0], score: s[1] } : { label: s.label, score: s.score }));
  return { label: r.label, score: r.score, scores, ms: performance.now() - t0 };
}

// Keeps what the microphone sent (up to 10 minutes) so the page can offer it
// as a WAV download and tests can check the capture path.
const MAX_KEEP_S = 600;

// Every event of a session carries its id and mode, so the page can drop
// the late events of a session it has already replaced with a new one.
//
// Timing: push() only buffers; the stream runs one model window per hop in
// the background and reports each through onPartial. A window's latency is
// the time from the push that made it ready (or the previous window's end,
// when windows queue up) to its update.
function startStream({ port, mode, session: id }) {
  const rec = need(mode === "kws" ? "kws" : "asr");
  const session = {
    id,
    mode,
    port,
    chunks: [],
    kept: 0,
    sampleRate: 0,
    audioSeconds: 0,
    busyMs: 0,
    lastPush: 0,
    lastUpdate: 0,
    stream: null,
    failed: null,
    ended: false,
  };
  const send = (msg) => post({ ...msg, session: id, mode });
  session.send = send;
  const fail = (err) => {
    if (session.failed) return;
    session.failed = err;
    send({ type: "stream-error", message: err?.message || String(err) });
  };
  if (mode !== "kws") {
    session.stream = rec.stream({
      onPartial: (text) => {
        const now = performance.now();
        const ms = now - Math.max(session.lastPush, session.lastUpdate);
        session.lastUpdate = now;
        session.busyMs += ms;
        send({ type: "partial", text });
        send({
          type: "hop",
          ms,
          rtf: session.audioSeconds ? session.busyMs / 1000 / session.audioSeconds : null,
          lag: session.stream ? session.stream.received - session.stream.committed : null,
        });
      },
      onFinal: (text, words) => send({ type: "final", text, words: plain(words) }),
      onError: fail,
    });
  }
  port.onmessage = (e) => {
    const m = e.data;
    if (m.type === "chunk") {
      session.sampleRate = m.sampleRate;
      session.audioSeconds += m.samples.length / m.sampleRate;
      if (session.kept < MAX_KEEP_S * m.sampleRate) {
        session.chunks.push(m.samples);
        session.kept += m.samples.length;
      }
      if (session.stream && !session.failed) {
        session.lastPush = performance.now();
        try {
          session.stream.push(m.samples, m.sampleRate);
        } catch (err) {
          fail(err);
        }
      }
    } else if (m.type === "end") {
      endStream(session);
    }
  };
  mic = session;
  return { ok: true };
}

function recording(session) {
  const all = new Float32Array(session.kept);
  let o = 0;
  for (const c of session.chunks) {
    all.set(c, o);
    o += c.length;
  }
  return all;
}

// Ends a session once, whoever asks first (the worklet's end marker, or the
// page when the worklet never answered), and always reports "stream-end".
async function endStream(session) {
  if (session.ended) return;
  session.ended = true;
  session.port.onmessage = null;
  session.port.close();
  const samples = recording(session);
  session.recording = samples;
  session.chunks = null;
  const end = { type: "stream-end", result: null, seconds: samples.length / (session.sampleRate || 1) };
  try {
    if (session.mode === "kws") {
      if (samples.length) end.result = await classify({ samples, sampleRate: session.sampleRate });
    } else if (!session.failed) {
      session.lastPush = performance.now();
      const r = await session.stream.finish();
      end.result = { text: r.text, words: plain(r.words) };
    }
  } catch (err) {
    session.send({ type: "stream-error", message: err?.message || String(err) });
  } finally {
    session.stream?.free?.();
    if (session.mode !== "kws") end.rtf = session.audioSeconds ? session.busyMs / 1000 / session.audioSeconds : null;
    session.send(end);
  }
}

const handlers = {
  load,
  transcribe,
  classify,
  startStream,
  clearCache: async () => (await api()).Recognizer.clearCache(),
  // The page's fallback when the worklet never delivered its end marker.
  endStream: ({ session }) => {
    if (mic && mic.id === session) endStream(mic);
    return { ok: true };
  },
  // The last microphone recording (of `session` when given), for the WAV
  // download and the page test.
  recording: ({ session }) => {
    if (!mic?.recording || (session !== undefined && mic.id !== session)) return null;
    return { samples: mic.recording.slice(), sampleRate: mic.sampleRate };
  },
};

self.onmessage = async (e) => {
  const { id, type, ...args } = e.data;
  const handler = handlers[type];
  try {
    if (!handler) throw new Error(`unknown request ${type}`);
    const result = await handler(args);
    post({ id, type: "done", result });
  } catch (err) {
    post({ id, type: "error", message: err?.message || String(err) });
  }
};

post({ type: "ready" });
