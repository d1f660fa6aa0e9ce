// The npm package (pkg/) in Node, without a browser: initialized from the
// .wasm bytes, loading the bundled models over HTTP from `sewd serve` with
// Node's own fetch (Node has no Cache API and no WebGPU: the CPU backend, no
// caching). Run with `make test-page` (builds pkg/ and the CLI first).
//
// The transcript and the keyword must be exactly what `sewd transcribe` and
// `sewd classify` print for the same clips: same samples, model and decoding.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startServer } from "./serve.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = path.join(ROOT, "target/release/sewd");
const PKG = path.join(ROOT, "pkg");
const CLIPS = path.join(ROOT, "tests/fixtures/clips");

let sewd;
let server;
let base;

/** Mono 16-bit PCM WAV -> { samples: Float32Array in [-1, 1), sampleRate }. */
function readWav(file) {
  const b = fs.readFileSync(file);
  assert.equal(b.toString("ascii", 0, 4), "RIFF", `${file} is not a RIFF file`);
  let fmt;
  for (let at = 12; at + 8 <= b.length; ) {
    const id = b.toString("ascii", at, at + 4);
    const size = b.readUInt32LE(at + 4);
    if (id === "fmt ") {
      fmt = { channels: b.readUInt16LE(at + 10), sampleRate: b.readUInt32LE(at + 12), bits: b.readUInt16LE(at + 22) };
    } else if (id === "data") {
      assert.ok(fmt && fmt.channels === 1 && fmt.bits === 16, `${file}: expected mono 16-bit PCM`);
      const samples = new Float32Array(size / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = b.readInt16LE(at + 8 + 2 * i) / 32768;
      return { samples, sampleRate: fmt.sampleRate };
    }
    at += 8 + size + (size & 1);
  }
  throw new Error(`${file} has no data chunk`);
}

/** A loopback port nothing listens on: bound by the OS, then released. */
function closedPort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on("error", reject);
  });
}

before(async () => {
  assert.ok(fs.existsSync(CLI), `no ${CLI}: run \`make cli\``);
  assert.ok(fs.existsSync(path.join(PKG, "sewd.js")), "no pkg/sewd.js: run `make pkg`");
  sewd = await import(pathToFileURL(path.join(PKG, "sewd.js")).href);
  await sewd.default({ module_or_path: fs.readFileSync(path.join(PKG, "sewd_bg.wasm")) });
  ({ url: base, server } = await startServer(CLI, ROOT));
});

after(() => {
  server?.kill();
});

test("node: transcribes a clip over HTTP exactly as the CLI does", async () => {
  const clip = path.join(CLIPS, "en_weather.wav");
  const expected = execFileSync(CLI, ["transcribe", "--model", path.join(ROOT, "models/sewd-demo-en"), clip], { encoding: "utf8" }).trim();
  const files = [];
  const rec = await sewd.Recognizer.load(new URL("/models/sewd-demo-en/", base), {
    onProgress: (_loaded, _total, file, cached) => {
      assert.equal(cached, false, "Node has no Cache API: nothing can come from a cache");
      if (!files.includes(file)) files.push(file);
    },
  });
  assert.equal(rec.backend, "cpu");
  assert.equal(rec.fallbackReason, undefined, "it never ran on WebGPU, so it never fell back");
  assert.equal(rec.head, "ctc");
  assert.ok(files.includes("model.safetensors"), `progress named ${files}`);
  const { samples, sampleRate } = readWav(clip);
  const out = await rec.transcribe(samples, sampleRate);
  assert.equal(out.text, expected);
  assert.equal(out.words.map((w) => w.word).join(" "), expected);
  rec.free();
});

test("node: classifies a keyword as the CLI does", async () => {
  const clip = path.join(CLIPS, "kws_yes.wav");
  const cli = execFileSync(CLI, ["classify", "--model", path.join(ROOT, "models/sewd-demo-kws"), clip], { encoding: "utf8" });
  const label = cli.trim().split("\t")[1];
  const rec = await sewd.Recognizer.load(`${base}/models/sewd-demo-kws/`);
  const { samples, sampleRate } = readWav(clip);
  const out = await rec.classify(samples, sampleRate);
  assert.equal(out.label, label);
  assert.equal(out.scores.length, 12);
  rec.free();
});

test("node: a missing model names the file it could not get, a refused connection says why, a relative URL is refused; clearCache has nothing to clear", async () => {
  await assert.rejects(sewd.Recognizer.load(`${base}/models/no-such-model/`), (e) => {
    assert.match(String(e.message ?? e), /models\/no-such-model\/config\.json: not found \(404\)/);
    return true;
  });
  const closed = await closedPort();
  await assert.rejects(sewd.Recognizer.load(`http://127.0.0.1:${closed}/model/`), (e) => {
    const message = String(e.message ?? e);
    assert.ok(message.includes(`could not fetch http://127.0.0.1:${closed}/model/config.json`), message);
    // Node's own reason (fetch's `cause`), and no browser-only CORS hint
    assert.match(message, /ECONNREFUSED 127\.0\.0\.1:\d+.*is the server running/);
    assert.doesNotMatch(message, /CORS/);
    return true;
  });
  await assert.rejects(sewd.Recognizer.load("./models/sewd-demo-en/"), (e) => {
    assert.match(String(e.message ?? e), /"\.\/models\/sewd-demo-en\/" is a relative URL.*pass an absolute http\(s\) URL/);
    return true;
  });
  assert.equal(await sewd.Recognizer.clearCache(), false);
});
