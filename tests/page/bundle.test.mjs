// The npm package through a bundler, as a web developer ships it: pkg/ is packed (`npm
// pack`) and installed into a copy of tests/page/bundle/ (an app that imports `sewd`),
// which is built with Vite; the build must carry both wasm builds
// (bundlers find assets only through `new URL('literal', import.meta.url)`, which
// scripts/relaxed_glue.mjs keeps) and, opened in Chromium, load the relaxed SIMD one, or
// the plain one where the engine refuses relaxed SIMD, and transcribe exactly as the CLI does.
// Run with `make test-page` (builds pkg/ and the CLI first).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build } from "vite";
import { startServer } from "./serve.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const CLI = path.join(ROOT, "target/release/sewd");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MODEL = path.join(ROOT, "tests/fixtures/models/ctc_group_both_shared");
const CLIP = path.join(ROOT, "tests/fixtures/models/speech_3s.wav");
const MODEL_FILES = ["config.json", "vocab.json", "preprocessor_config.json", "model.safetensors"];

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
  const app = path.join(out, "app");
  fs.cpSync(path.join(HERE, "bundle"), app, { recursive: true });
  const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });
  const [{ filename }] = JSON.parse(npm(["pack", path.join(ROOT, "pkg"), "--pack-destination", out, "--json"], out));
  npm(["install", "--offline", path.join(out, filename)], app);
  await build({
    root: app,
    logLevel: "warn",
    build: { outDir: path.join(out, "www"), emptyOutDir: true, target: "esnext" },
  });
  fs.mkdirSync(path.join(out, "www/model"));
  for (const f of MODEL_FILES) fs.copyFileSync(path.join(MODEL, f), path.join(out, "www/model", f));
  site = await startServer(CLI, out);
});

after(() => {
  site?.server.kill();
  if (out) fs.rmSync(out, { recursive: true, force: true });
});

test("vite: the build carries both wasm builds and Chromium loads the one it can run", async () => {
  const assets = fs.readdirSync(path.join(out, "www/assets"));
  assert.ok(assets.some((f) => /^sewd_bg-.*\.wasm$/.test(f)), `no plain module among ${assets}`);
  assert.ok(assets.some((f) => /^sewd_relaxed_bg-.*\.wasm$/.test(f)), `no relaxed SIMD module among ${assets}`);
  const expected = execFileSync(CLI, ["transcribe", "--model", MODEL, CLIP], { encoding: "utf8" }).trim();
  const { samples, rate } = readWav(CLIP);
  // The second run stands in for a browser without relaxed SIMD: WebAssembly.validate, which
  // the glue's probe asks, refuses everything (the plain module needs no validate).
  for (const relaxedSimd of [true, false]) {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage();
      if (!relaxedSimd) await page.addInitScript(() => (WebAssembly.validate = () => false));
      const log = [];
      page.on("console", (m) => log.push(`[${m.type()}] ${m.text()}`));
      page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
      await page.goto(`${site.url}/index.html`);
      await page.waitForFunction(() => window.appReady === true, null, { timeout: 30_000 });
      const got = await page.evaluate(([s, r]) => window.transcribe(s, r), [samples, rate]);
      assert.deepEqual(got.features, { threads: false, relaxedSimd }, log.join("\n"));
      assert.equal(got.text, expected, log.join("\n"));
    } finally {
      await browser.close();
    }
  }
});
