// Adds the threaded builds to the package.json wasm-pack wrote: `import ... from "sewd"`
// stays the single-threaded module, `"sewd/threads"` is the one with initThreadPool, as
// pkg/threads/ for browsers and Node (the "default" condition) and as pkg/threads-bundler/
// for bundlers (their "module" condition), whose pool workers a bundler can follow. Each
// directory holds a relaxed SIMD twin of its .wasm, which init() picks where the engine
// supports it. Usage: node scripts/package_exports.mjs pkg/package.json
import fs from "node:fs";
import path from "node:path";

const file = process.argv[2];
const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
const dir = path.dirname(file);
const module = (d) => [`${d}/sewd.js`, `${d}/sewd_bg.wasm`, `${d}/sewd_relaxed_bg.wasm`, `${d}/sewd.d.ts`, `${d}/snippets/`];
const added = ["sewd_relaxed_bg.wasm", ...module("threads"), ...module("threads-bundler"), "threads-bundler/package.json"];
for (const f of added) {
  if (!fs.existsSync(path.join(dir, f))) throw new Error(`${path.join(dir, f)} is missing: build the threaded modules first`);
}
pkg.files = [...new Set([...(pkg.files || []), ...added])];
pkg.exports = {
  ".": { types: "./sewd.d.ts", default: "./sewd.js" },
  "./threads": { types: "./threads/sewd.d.ts", module: "./threads-bundler/sewd.js", default: "./threads/sewd.js" },
  "./sewd_bg.wasm": "./sewd_bg.wasm",
  "./sewd_relaxed_bg.wasm": "./sewd_relaxed_bg.wasm",
  "./threads/sewd_bg.wasm": "./threads/sewd_bg.wasm",
  "./threads/sewd_relaxed_bg.wasm": "./threads/sewd_relaxed_bg.wasm",
  "./package.json": "./package.json",
};
pkg.sideEffects = [...new Set([...(pkg.sideEffects || []), "./threads/snippets/*", "./threads-bundler/snippets/*"])];
fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
