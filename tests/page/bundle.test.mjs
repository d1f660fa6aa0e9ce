// The npm package through a bundler, as a web developer ships it: pkg/ is packed (`npm
// pack`) and installed into a copy of tests/page/bundle/ (an app that imports `sewd`),
// which is built with Vite; the build must carry both wasm builds
// (bundlers find assets only through `new URL('literal', import.meta.url)`, which
// scripts/relaxed_glue.mjs keeps) and, opened in Chromium, load the relaxed SIMD one, or
// the plain one where the engine refuses relaxed SIMD, and transcribe exactly as the CLI does.
// The second test bundles `sewd/threads` into a worker (bundle/threads-worker.js): its
// pool must start from the bundle and transcribe the same. The third runs both pages on
// Vite's dev server, which serves dependencies its own way.
// Run with `make test-page` (builds pkg/ and the CLI first).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build, createServer } from "vite";
import { startServer } from "./serve.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const CLI = path.join(ROOT, "target/release/sewd");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MODEL = path.join(ROOT, "tests/fixtures/models/ctc_group_both_shared");
const CLIP = path.join(ROOT, "tests/fixtures/models/speech_3s.wav");
const MODEL_FILES = ["config.json", "vocab.json", "preprocessor_config.json", "model.safetensors"];

let expected; // the CLI's transcript of CLIP
let app; // the app's sources, with the packed sewd installed
let out; // served by `sewd serve --root out`, which serves out/www/ at /
let site;

/** Mono 16-bit PCM WAV samples as numbers in [-1, 1). */
function readWav(file) {
  const buf = fs.readFileSync(file);
  let at = 12;
  let rate = 0;
  while (at + 8 <= buf.length) {
    const id = buf.toString("ascii", at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    if (id === "fmt ") {
      assert.equal(buf.readUInt16LE(at + 8), 1, `${file}: PCM expected`);
      assert.equal(buf.readUInt16LE(at + 10), 1, `${file}: mono expected`);
      rate = buf.readUInt32LE(at + 12);
      assert.equal(buf.readUInt16LE(at + 22), 16, `${file}: 16-bit expected`);
    } else if (id === "data") {
      const samples = [];
      for (let i = 0; i + 1 < size; i += 2) samples.push(buf.readInt16LE(at + 8 + i) / 32768);
      return { samples, rate };
    }
    at += 8 + size + (size & 1);
  }
  throw new Error(`${file}: no data chunk`);
}

before(async () => {
  for (const [file, how] of [[path.join(ROOT, "pkg/sewd_relaxed_bg.wasm"), "make pkg"], [CLI, "make cli"]]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`${how}\``);
  }
  out = fs.mkdtempSync(path.join(os.tmpdir(), "sewd-bundle-"));
  // The package as npm would publish it (package.json's `files` and `exports`), installed.
  app = path.join(out, "app");
  fs.cpSync(path.join(HERE, "bundle"), app, { recursive: true });
  // The model as a static file of the app (Vite copies public/ into the build).
  fs.mkdirSync(path.join(app, "public/model"), { recursive: true });
  for (const f of MODEL_FILES) fs.copyFileSync(path.join(MODEL, f), path.join(app, "public/model", f));
  const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });
  const [{ filename }] = JSON.parse(npm(["pack", path.join(ROOT, "pkg"), "--pack-destination", out, "--json"], out));
  npm(["install", "--offline", path.join(out, filename)], app);
  await build({
    root: app,
    logLevel: "warn",
    build: {
      outDir: path.join(out, "www"),
      emptyOutDir: true,
      target: "esnext",
      rollupOptions: { input: { index: path.join(app, "index.html"), threads: path.join(app, "threads.html") } },
    },
    worker: { format: "es" },
  });
  site = await startServer(CLI, out);
  expected = execFileSync(CLI, ["transcribe", "--model", MODEL, CLIP], { encoding: "utf8" }).trim();
});

/** Opens `page` of the site at `base` in a fresh Chromium (after `initScript`, if any) and
 *  returns what its window.transcribe(samples, rate) resolves to, plus the console log. */
async function transcribeIn(base, page, samples, rate, initScript) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const tab = await browser.newPage();
    if (initScript) await tab.addInitScript(initScript);
    const log = [];
    tab.on("console", (m) => log.push(`[${m.type()}] ${m.text()}`));
    tab.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
    await tab.goto(`${base}/${page}`);
    await tab.waitForFunction(() => window.appReady === true, null, { timeout: 30_000 });
    // A pool that never starts would otherwise wait forever.
    let timer;
    const limit = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${page}: no transcript in 120 s\n${log.join("\n")}`)), 120_000)));
    const got = await Promise.race([tab.evaluate(([s, r]) => window.transcribe(s, r), [samples, rate]), limit]).finally(() => clearTimeout(timer));
    return { ...got, log: log.join("\n") };
  } finally {
    await browser.close();
  }
}

after(() => {
  site?.server.kill();
  if (out) fs.rmSync(out, { recursive: true, force: true });
});

test("vite: the build carries both wasm builds and Chromium loads the one it can run", async () => {
  const assets = fs.readdirSync(path.join(out, "www/assets"));
  assert.ok(assets.some((f) => /^sewd_bg-.*\.wasm$/.test(f)), `no plain module among ${assets}`);
  assert.ok(assets.some((f) => /^sewd_relaxed_bg-.*\.wasm$/.test(f)), `no relaxed SIMD module among ${assets}`);
  const { samples, rate } = readWav(CLIP);
  // The second run stands in for a browser without relaxed SIMD: WebAssembly.validate, which
  // the glue's probe asks, refuses everything (the plain module needs no validate).
  for (const relaxedSimd of [true, false]) {
    const noRelaxed = relaxedSimd ? null : () => (WebAssembly.validate = () => false);
    const got = await transcribeIn(site.url, "index.html", samples, rate, noRelaxed);
    assert.deepEqual(got.features, { threads: false, relaxedSimd }, got.log);
    assert.equal(got.text, expected, got.log);
  }
});

test("vite: sewd/threads bundled into a worker starts its pool and transcribes the same", async () => {
  const { samples, rate } = readWav(CLIP);
  const got = await transcribeIn(site.url, "threads.html", samples, rate);
  assert.equal(got.error, undefined, got.log);
  assert.deepEqual(got.features, { threads: true, relaxedSimd: true }, got.log);
  assert.equal(got.text, expected, got.log);
});

test("vite dev server: sewd and sewd/threads load and transcribe the same", async () => {
  // The dev server answers a missing file (the model's optional tokenizer_config.json)
  // with the app's index.html and status 200: the loader must take that as missing.
  const isolated = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
  const dev = await createServer({ root: app, logLevel: "warn", server: { host: "127.0.0.1", port: 0, headers: isolated }, worker: { format: "es" } });
  await dev.listen();
  try {
    const base = dev.resolvedUrls.local[0].replace(/\/$/, "");
    const { samples, rate } = readWav(CLIP);
    for (const [page, threads] of [["index.html", false], ["threads.html", true]]) {
      const got = await transcribeIn(base, page, samples, rate);
      assert.equal(got.error, undefined, got.log);
      assert.deepEqual(got.features, { threads, relaxedSimd: true }, got.log);
      assert.equal(got.text, expected, got.log);
    }
  } finally {
    await dev.close();
  }
});
