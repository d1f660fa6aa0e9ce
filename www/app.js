// The demo page: UI state, microphone capture, file decoding. The model lives
// in worker.js; this thread only moves messages and paints.
//
// URL parameters (handy for links and tests): ?model=URL-or-hub-id,
// ?backend=auto|webgpu|cpu, ?kws=URL, ?threads=N (the CPU backend's threads; default one per core),
// ?simd=plain|relaxed (which build of the wasm module; default relaxed where the browser has it).

import { decodeAudioFile, encodeWav } from "./audio.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const BUNDLED_ASR = new URL("../models/sewd-demo-en/", location.href).href;
const BUNDLED_KWS = new URL("../models/sewd-demo-kws/", location.href).href;

// ---------------------------------------------------------------- messages

function setStatus(text) {
  $("status").textContent = text;
}

function showMessage(kind, text, key = text) {
  const box = $("messages");
  let el = [...box.children].find((c) => c.dataset.key === key);
  if (!el) {
    el = document.createElement("div");
    el.dataset.key = key;
    const close = document.createElement("button");
    close.className = "close";
    close.textContent = "×";
    close.title = "Dismiss";
    close.onclick = () => el.remove();
    el.append(document.createElement("span"), close);
    box.append(el);
  }
  el.className = `message ${kind}`;
  el.firstChild.textContent = text;
}

function clearMessage(key) {
  [...$("messages").children].filter((c) => c.dataset.key === key).forEach((c) => c.remove());
}

function unsupported() {
  const missing = [];
  if (typeof WebAssembly !== "object") missing.push("WebAssembly");
  if (typeof Worker === "undefined") missing.push("Web Workers");
  if (typeof AudioWorkletNode === "undefined") missing.push("AudioWorklet");
  // wasm SIMD (v128.const; i32x4.add; drop), which the CPU kernels use.
  const simd = new Uint8Array([0,97,115,109,1,0,0,0,1,4,1,96,0,0,3,2,1,0,10,44,1,42,0,253,12,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,253,12,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,253,174,1,26,11]);
  if (typeof WebAssembly === "object" && !WebAssembly.validate(simd)) missing.push("WebAssembly SIMD");
  return missing;
}

// ---------------------------------------------------------------- worker

const workerUrl = new URL("./worker.js", import.meta.url);
for (const key of ["threads", "simd"]) if (params.has(key)) workerUrl.searchParams.set(key, params.get(key));
const worker = new Worker(workerUrl, { type: "module" });
const pending = new Map();
let nextId = 1;

function call(type, args = {}, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, type, ...args }, transfer);
  });
}

worker.onerror = (e) => {
  showMessage("error", `The model worker failed to start: ${e.message || "module workers may be unsupported in this browser"}.`, "worker");
};

worker.onmessage = (e) => {
  const m = e.data;
  if (m.id && pending.has(m.id)) {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.type === "error") p.reject(new Error(m.message));
    else p.resolve(m.result);
    return;
  }
  if (m.session !== undefined && m.session !== activeSession[m.mode]) {
    // A late event of a microphone session the user has already replaced.
    const stale = document.body.dataset.staleEvents;
    document.body.dataset.staleEvents = stale ? `${stale} ${m.type}` : m.type;
    return;
  }
  switch (m.type) {
    case "progress": return onProgress(m);
    case "partial": return transcript.partial(m.text);
    case "final": return transcript.final(m.text, m.words);
    case "hop": return showHop(m.ms, m.rtf, m.lag);
    case "stream-error": return showMessage("error", `Recognition failed: ${m.message}`, "stream");
    case "stream-end": return onStreamEnd(m);
  }
};

// ---------------------------------------------------------------- model loading

const loaded = { asr: null, kws: null };
const downloads = new Map(); // file -> {loaded, total}

function onProgress({ loaded: got, total, file, cached }) {
  downloads.set(file || "model", { loaded: got, total: total || 0 });
  let sum = 0;
  let sumTotal = 0;
  for (const d of downloads.values()) {
    sum += d.loaded;
    sumTotal += Math.max(d.total, d.loaded);
  }
  $("download").hidden = false;
  const bar = $("download-bar");
  if (sumTotal > 0) {
    bar.max = sumTotal;
    bar.value = sum;
  } else {
    bar.removeAttribute("value");
  }
  const totalText = total ? ` / ${bytes(total)}` : "";
  const from = cached ? " (from the browser cache)" : "";
  $("download-text").textContent = `${file || "model"}: ${bytes(got)}${totalText}${from} · all files ${bytes(sum)}${sumTotal ? ` / ${bytes(sumTotal)}` : ""}`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function modelSource() {
  const kind = $("model-select").value;
  if (kind === "bundled") return { kind: "url", ref: BUNDLED_ASR, name: "the bundled English model" };
  if (kind === "url") {
    const url = $("model-url").value.trim();
    if (!url) throw new Error("enter the URL of a model folder");
    return { kind: "url", ref: new URL(url, location.href).href, name: url };
  }
  if (kind === "hub") {
    const id = $("hub-id").value.trim();
    if (!/^[\w.-]+\/[\w.-]+$/.test(id)) throw new Error("enter a hub id such as asapp/sew-d-tiny-100k-ft-ls100h");
    return { kind: "hub", ref: id, name: id };
  }
  const files = [...$("model-folder").files];
  if (!files.length) throw new Error("choose a folder holding config.json and the weights");
  if (!files.some((f) => f.name === "config.json")) throw new Error("the chosen folder has no config.json");
  return { kind: "files", files, name: files[0].webkitRelativePath.split("/")[0] || "local folder" };
}

async function loadModel(slot, source) {
  const backend = $("backend-select").value;
  downloads.clear();
  $("download").hidden = true;
  clearMessage(`load-${slot}`);
  clearMessage("webgpu");
  setStatus(`Loading ${source.name}…`);
  setBusy(slot, true);
  const t0 = performance.now();
  try {
    const { files, ...rest } = source;
    const info = await call("load", { slot, backend, source: files ? { ...rest, files } : rest });
    loaded[slot] = { ...info, name: source.name };
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const on = info.backend === "cpu" ? `CPU, ${threadsText(info)}` : label(info.backend);
    setStatus(`Ready: ${source.name} on ${on} (loaded in ${secs} s).`);
    if (slot === "asr") showBackend(info);
    clearMessage("threads");
    if (info.backend === "cpu" && info.threads < info.threadsAsked) {
      showMessage("info", `The CPU backend runs on one thread, not ${info.threadsAsked}: ${info.threadsWhy}.`, "threads");
    }
    if (info.backend === "cpu" && backend === "auto" && info.gpu.startsWith("software")) {
      showMessage("info", `This browser's WebGPU has no GPU behind it (${info.gpu.slice(10)}, a software fallback), which is slower than the CPU path, so the model runs on the CPU. Choose WebGPU in the backend menu to use it anyway.`, "webgpu");
    } else if (info.backend === "cpu" && backend !== "cpu" && info.gpu !== "ok") {
      showMessage("warning", `WebGPU is not available (${info.gpu}), so the model runs on the CPU instead. It works, only slower.`, "webgpu");
    }
  } catch (err) {
    // The worker keeps the previous model when a load fails.
    const still = loaded[slot] ? ` Still using ${loaded[slot].name}.` : "";
    setStatus(`Could not load ${source.name}.${still}`);
    showMessage("error", `Model load failed: ${err.message}${hint(source, err)}`, `load-${slot}`);
  } finally {
    setBusy(slot, false);
  }
}

function hint(source, err) {
  const msg = String(err.message);
  if (source.ref === BUNDLED_ASR && /404|not found/i.test(msg)) return " (the bundled model is not in this build; pick a hub id or a local folder)";
  if (source.kind === "hub" && /fetch|network|cors/i.test(msg)) return " (is the hub reachable from this network?)";
  return "";
}

const label = (b) => (b === "webgpu" ? "WebGPU" : b === "cpu" ? "CPU" : String(b));
const threadsText = (info) => `${info.threads} thread${info.threads === 1 ? "" : "s"}`;

function showBackend(info) {
  const el = $("backend");
  el.textContent = label(info.backend);
  el.dataset.backend = info.backend;
  el.dataset.threads = info.backend === "cpu" ? String(info.threads) : "";
  el.dataset.wasm = info.wasm; // which module runs: "threads" (pkg/threads/) or "single" (pkg/)
  el.dataset.simd = info.simd; // and which build of it: "relaxed" (fused multiply-adds) or "plain"
  el.title = info.backend === "webgpu" ? "Running on the GPU through WebGPU" : `Running on the CPU (WebAssembly${info.simd === "relaxed" ? " with relaxed SIMD" : ""}, ${threadsText(info)}: ${info.threadsWhy})`;
}

function showHop(ms, rtf, lag) {
  $("hop").textContent = `hop ${ms.toFixed(0)} ms`;
  if (lag != null) $("hop").title = `Latest model window took ${ms.toFixed(0)} ms; final text trails the audio by ${lag.toFixed(2)} s`;
  if (rtf != null && isFinite(rtf)) showRtf(rtf);
}

function showRtf(rtf) {
  $("rtf").textContent = `RTF ${rtf.toFixed(2)}`;
  $("rtf").title = `Real-time factor ${rtf.toFixed(3)}: ${rtf > 0 ? (1 / rtf).toFixed(1) : "∞"}× faster than real time`;
}

function setBusy(slot, busy) {
  if (slot === "asr") {
    $("load-button").disabled = busy;
    const ready = !busy && loaded.asr;
    $("mic-button").disabled = !ready && !recorder;
    $("file-input").disabled = !ready;
  } else {
    $("kws-load").disabled = busy;
    $("kws-record").disabled = busy || !loaded.kws;
    $("kws-file").disabled = busy || !loaded.kws;
  }
}

// ---------------------------------------------------------------- transcript

const transcript = {
  el: $("transcript"),
  partialEl: null,
  clear() {
    this.el.replaceChildren();
    this.partialEl = null;
  },
  ensurePartial() {
    if (!this.partialEl || !this.partialEl.isConnected) {
      this.partialEl = document.createElement("span");
      this.partialEl.className = "partial";
      this.el.append(this.partialEl);
    }
    return this.partialEl;
  },
  partial(text) {
    this.ensurePartial().textContent = text ? this.sep() + text : "";
  },
  sep() {
    const prev = this.partialEl?.previousSibling;
    return prev && prev.textContent && !/\s$/.test(prev.textContent) ? " " : "";
  },
  final(text, words) {
    const p = this.ensurePartial();
    p.textContent = "";
    if (!text) return;
    const seg = document.createElement("span");
    seg.className = "final";
    const lead = p.previousSibling && p.previousSibling.textContent ? " " : "";
    if (words && words.length) {
      seg.append(lead);
      words.forEach((w, i) => {
        const s = document.createElement("span");
        s.className = "word";
        s.textContent = w.word;
        s.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s`;
        seg.append(s, i + 1 < words.length ? " " : "");
      });
    } else {
      seg.textContent = lead + text;
    }
    this.el.insertBefore(seg, p);
  },
  text() {
    return this.el.textContent.trim();
  },
};

$("copy-button").onclick = async () => {
  const text = transcript.text();
  try {
    await navigator.clipboard.writeText(text);
    setStatus("Transcript copied.");
  } catch {
    const range = document.createRange();
    range.selectNodeContents(transcript.el);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    setStatus("Select-all done: press Ctrl+C to copy (clipboard access was refused).");
  }
};
$("clear-button").onclick = () => transcript.clear();

// ---------------------------------------------------------------- microphone

let recorder = null; // { ctx, node, stream, mode, id }: one microphone, either tab
let sessionCount = 0;
// Per mode, the session whose events the page shows (see worker.onmessage).
const activeSession = { asr: 0, kws: 0 };

function assertMicFree() {
  if (recorder) {
    throw new Error(recorder.mode === "kws"
      ? "The microphone is busy with a keyword recording; try again when it ends."
      : "The microphone is streaming to the Speech tab; stop it there first.");
  }
}

async function startMic(mode) {
  assertMicFree();
  // From this click on, events of the mode's previous session are stale.
  const id = ++sessionCount;
  activeSession[mode] = id;
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error(window.isSecureContext ? "this browser has no microphone API" : "the microphone needs https or localhost");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      throw new Error("Microphone permission denied. Allow microphone access for this site (the icon left of the address) and press Start again.");
    }
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") throw new Error("No microphone found. Plug one in, or transcribe a file instead.");
    if (err.name === "NotReadableError") throw new Error("The microphone is busy in another application.");
    throw err;
  }
  // Capture at the device rate: forcing 16 kHz here fails in Firefox; the
  // Recognizer resamples.
  const ctx = new AudioContext();
  try {
    await ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "sewd-capture", { numberOfInputs: 1, numberOfOutputs: 0, processorOptions: { chunkMs: 100 } });
    const channel = new MessageChannel();
    node.port.postMessage({ type: "sink", port: channel.port1 }, [channel.port1]);
    await call("startStream", { port: channel.port2, mode, session: id }, [channel.port2]);
    node.onprocessorerror = () => showMessage("error", "The audio capture stopped with an error; press Stop, then Start again.", "mic");
    node.port.onmessage = (e) => {
      if (e.data.type === "level") showLevel(e.data.rms, e.data.peak);
    };
    source.connect(node);
    await ctx.resume();
    recorder = { ctx, node, stream, mode, id, startedAt: performance.now() };
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    throw err;
  }
}

async function stopMic() {
  const r = recorder;
  if (!r) return;
  recorder = null;
  const flushed = new Promise((resolve) => {
    r.node.port.onmessage = (e) => e.data.type === "flushed" && resolve(true);
    setTimeout(() => resolve(false), 1000);
  });
  r.node.port.postMessage({ type: "flush" });
  // A worklet that never answers never sent the worker its end marker either.
  if (!(await flushed)) await call("endStream", { session: r.id });
  r.stream.getTracks().forEach((t) => t.stop());
  await r.ctx.close();
  showLevel(0, 0);
}

function showLevel(rms, peak) {
  // dBFS from -60 to 0 across the bar.
  const db = 20 * Math.log10(Math.max(rms, 1e-6));
  const pct = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
  const el = $("level");
  el.style.width = `${pct}%`;
  el.classList.toggle("clip", peak >= 0.99);
}

function micButton(btn, on, text) {
  btn.classList.toggle("on", on);
  btn.querySelector(".label").textContent = text;
  btn.setAttribute("aria-pressed", String(on));
}

$("mic-button").onclick = async () => {
  const btn = $("mic-button");
  btn.disabled = true;
  try {
    if (recorder?.mode === "asr") {
      setStatus("Finishing…");
      micButton(btn, false, "Start microphone");
      await stopMic();
    } else {
      assertMicFree();
      clearMessage("mic");
      clearMessage("stream");
      transcript.clear();
      $("download-recording").hidden = true;
      await startMic("asr");
      micButton(btn, true, "Stop");
      setStatus("Listening… speak now.");
    }
  } catch (err) {
    micButton(btn, false, "Start microphone");
    showMessage("error", err.message, "mic");
    setStatus("Microphone not started.");
  } finally {
    btn.disabled = !loaded.asr && !recorder;
  }
};

let lastRecordingUrl = null;

async function onStreamEnd(m) {
  if (m.mode === "kws") {
    $("kws-record").disabled = !loaded.kws;
    micButton($("kws-record"), false, "Record 2 s");
    if (m.result) showClasses(m.result);
    else setStatus("Nothing was recorded.");
    return;
  }
  if (m.result) {
    // finish() returns the whole session's final words: the same text the
    // callbacks built up, now with every word's timing in one place.
    transcript.clear();
    transcript.final(m.result.text, m.result.words);
  } else {
    transcript.partial("");
  }
  if (m.rtf != null) showRtf(m.rtf);
  setStatus(`Done: ${m.seconds.toFixed(1)} s of audio.`);
  const rec = await call("recording", { session: m.session });
  if (rec && rec.samples.length) {
    if (lastRecordingUrl) URL.revokeObjectURL(lastRecordingUrl);
    lastRecordingUrl = URL.createObjectURL(encodeWav(rec.samples, rec.sampleRate));
    $("download-recording").href = lastRecordingUrl;
    $("download-recording").hidden = false;
  }
  document.body.dataset.streamDone = String(Number(document.body.dataset.streamDone || 0) + 1);
}

// ---------------------------------------------------------------- files

$("file-input").onchange = async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  e.target.value = "";
  const box = $("file-progress");
  box.hidden = false;
  const bar = $("file-bar");
  bar.removeAttribute("value");
  $("file-input").disabled = true;
  $("mic-button").disabled = true;
  clearMessage("file");
  try {
    $("file-text").textContent = `Decoding ${file.name}…`;
    const audio = await decodeAudioFile(await file.arrayBuffer(), file.name);
    const seconds = audio.samples.length / audio.sampleRate;
    $("file-text").textContent = `Transcribing ${file.name} (${seconds.toFixed(1)} s)… 0.0 s`;
    const t0 = performance.now();
    const tick = setInterval(() => {
      $("file-text").textContent = `Transcribing ${file.name} (${seconds.toFixed(1)} s)… ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    }, 100);
    let r;
    try {
      r = await call("transcribe", { samples: audio.samples, sampleRate: audio.sampleRate }, [audio.samples.buffer]);
    } finally {
      clearInterval(tick);
    }
    transcript.clear();
    transcript.final(r.text, r.words);
    bar.max = 1;
    bar.value = 1;
    $("file-text").textContent = `${file.name}: ${r.seconds.toFixed(1)} s of audio in ${(r.ms / 1000).toFixed(2)} s`;
    showRtf(r.rtf);
    setStatus(`Transcribed ${file.name}.`);
    document.body.dataset.fileDone = String(Number(document.body.dataset.fileDone || 0) + 1);
  } catch (err) {
    box.hidden = true;
    showMessage("error", `Could not transcribe ${file.name}: ${err.message}`, "file");
    setStatus("File not transcribed.");
  } finally {
    $("file-input").disabled = !loaded.asr;
    $("mic-button").disabled = !loaded.asr;
  }
};

// ---------------------------------------------------------------- keywords

$("kws-url").value = params.get("kws") || BUNDLED_KWS;

$("kws-load").onclick = () => {
  const ref = $("kws-url").value.trim();
  const hub = /^[\w.-]+\/[\w.-]+$/.test(ref) && !ref.includes(":");
  loadModel("kws", { kind: hub ? "hub" : "url", ref: hub ? ref : new URL(ref, location.href).href, name: ref });
};

$("kws-record").onclick = async () => {
  const btn = $("kws-record");
  btn.disabled = true;
  try {
    clearMessage("mic");
    await startMic("kws");
    micButton(btn, true, "Listening…");
    const mine = recorder;
    setTimeout(() => recorder === mine && stopMic(), 2000);
  } catch (err) {
    btn.disabled = false;
    showMessage("error", err.message, "mic");
  }
};

$("kws-file").onchange = async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  e.target.value = "";
  try {
    const audio = await decodeAudioFile(await file.arrayBuffer(), file.name);
    showClasses(await call("classify", { samples: audio.samples, sampleRate: audio.sampleRate }, [audio.samples.buffer]));
  } catch (err) {
    showMessage("error", `Could not classify ${file.name}: ${err.message}`, "kws");
  }
};

function showClasses(r) {
  const box = $("kws-result");
  box.replaceChildren();
  const head = document.createElement("p");
  head.className = "kws-label";
  head.textContent = r.label;
  box.append(head);
  const scores = [...(r.scores || [])].sort((a, b) => b.score - a.score).slice(0, 12);
  for (const s of scores) {
    const row = document.createElement("div");
    row.className = "score";
    const name = document.createElement("span");
    name.textContent = s.label;
    const bar = document.createElement("meter");
    bar.min = 0;
    bar.max = 1;
    bar.value = s.score;
    const val = document.createElement("span");
    val.textContent = `${(s.score * 100).toFixed(1)}%`;
    row.append(name, bar, val);
    box.append(row);
  }
  setStatus(`Keyword: ${r.label}`);
}

// ---------------------------------------------------------------- tabs & picker

for (const [tab, panel] of [["tab-asr", "panel-asr"], ["tab-kws", "panel-kws"]]) {
  $(tab).onclick = () => {
    for (const [t, p] of [["tab-asr", "panel-asr"], ["tab-kws", "panel-kws"]]) {
      $(t).setAttribute("aria-selected", String(t === tab));
      $(p).hidden = p !== panel;
    }
    if (tab === "tab-kws" && !loaded.kws && !$("kws-load").disabled) $("kws-load").click();
  };
}

function showPickerInputs() {
  const kind = $("model-select").value;
  $("hub-id").hidden = kind !== "hub";
  $("model-url").hidden = kind !== "url";
  $("model-folder").hidden = kind !== "folder";
}
$("model-select").onchange = showPickerInputs;
$("model-folder").onchange = () => $("load-button").click();
$("clear-cache").onclick = async () => {
  try {
    const had = await call("clearCache");
    setStatus(had ? "Forgot the downloaded models: the next load downloads again." : "No downloaded models were kept.");
  } catch (err) {
    showMessage("error", `Could not clear the model cache: ${err.message}`, "cache");
  }
};
$("load-button").onclick = () => {
  let source;
  try {
    source = modelSource();
  } catch (err) {
    showMessage("error", `Model: ${err.message}.`, "load-asr");
    return;
  }
  loadModel("asr", source);
};

// ---------------------------------------------------------------- start

// Test and console hooks.
window.sewdDemo = {
  transcript: () => transcript.text(),
  recording: () => call("recording"),
  loaded,
};

const missing = unsupported();
if (missing.length) {
  showMessage("error", `This browser is not supported: it lacks ${missing.join(", ")}. Use a recent Chrome, Edge, Firefox or Safari.`, "unsupported");
  setStatus("Unsupported browser.");
  $("load-button").disabled = true;
} else {
  if (!("gpu" in navigator)) {
    showMessage("warning", "This browser has no WebGPU: the model will run on the CPU (WebAssembly), which is slower.", "webgpu");
  }
  const backend = params.get("backend");
  if (backend) $("backend-select").value = backend;
  const model = params.get("model");
  if (model) {
    const hub = /^[\w.-]+\/[\w.-]+$/.test(model);
    $("model-select").value = hub ? "hub" : "url";
    $(hub ? "hub-id" : "model-url").value = model;
  }
  showPickerInputs();
  $("load-button").click();
}
