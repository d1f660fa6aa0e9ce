// Adds the threaded build (pkg/threads/) to the package.json wasm-pack wrote:
// `import ... from "sewd"` stays the single-threaded module, `"sewd/threads"`
// is the one with initThreadPool. Each holds a relaxed SIMD twin of its .wasm, which init()
// picks where the engine supports it. Usage: node scripts/package_exports.mjs pkg/package.json
import fs from "node:fs";
import path from "node:path";

const file = process.argv[2];
const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
const dir = path.dirname(file);
const threaded = ["threads/sewd.js", "threads/sewd_bg.wasm", "threads/sewd_relaxed_bg.wasm", "threads/sewd.d.ts", "threads/snippets/"];
for (const f of ["sewd_relaxed_bg.wasm", ...threaded]) {
  if (!fs.existsSync(path.join(dir, f))) throw new Error(`${path.join(dir, f)} is missing: build the threaded module first`);
}
pkg.files = [...new Set([...(pkg.files || []), "sewd_relaxed_bg.wasm", ...threaded])];
pkg.exports = {
  ".": { types: "./sewd.d.ts", default: "./sewd.js" },
  "./threads": { types: "./threads/sewd.d.ts", default: "./threads/sewd.js" },
  "./sewd_bg.wasm": "./sewd_bg.wasm",
  "./sewd_relaxed_bg.wasm": "./sewd_relaxed_bg.wasm",
  "./threads/sewd_bg.wasm": "./threads/sewd_bg.wasm",
  "./threads/sewd_relaxed_bg.wasm": "./threads/sewd_relaxed_bg.wasm",
  "./package.json": "./package.json",
};
pkg.sideEffects = [...new Set([...(pkg.sideEffects || []), "./threads/snippets/*"])];
fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
