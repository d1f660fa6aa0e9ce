// Makes a wasm-bindgen `--target web` glue file load `sewd_relaxed_bg.wasm` by default
// where the engine compiles WebAssembly relaxed SIMD, else `sewd_bg.wasm` as before.
// Both modules come from the same Rust source (only the target features differ), so
// they share one glue; build_pkg.sh checks that before calling this.
//
// Usage: node scripts/relaxed_glue.mjs pkg/sewd.js
import fs from "node:fs";

const file = process.argv[2];
const glue = fs.readFileSync(file, "utf8");
const DEFAULT = "module_or_path = new URL('sewd_bg.wasm', import.meta.url);";
// Each file in a `new URL('literal', import.meta.url)` of its own: bundlers (Vite, webpack)
// find and emit assets only through that static form.
const PICKED = "module_or_path = __sewdRelaxedSimd()\n" +
  "            ? new URL('sewd_relaxed_bg.wasm', import.meta.url)\n" +
  "            : new URL('sewd_bg.wasm', import.meta.url);";

// A module whose one function returns f32x4.relaxed_madd of three zero vectors: it
// validates exactly where relaxed SIMD is supported.
const PROBE = `
/** Whether this engine compiles WebAssembly relaxed SIMD (added by sewd's build). */
function __sewdRelaxedSimd() {
    const zero = [0xfd, 0x0c, ...new Array(16).fill(0)];
    const body = [0x00, ...zero, ...zero, ...zero, 0xfd, 0x85, 0x02, 0x0b];
    const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,
        0x03, 0x02, 0x01, 0x00, 0x0a, body.length + 2, 0x01, body.length, ...body];
    try {
        return WebAssembly.validate(new Uint8Array(bytes));
    } catch {
        return false;
    }
}
`;

const count = glue.split(DEFAULT).length - 1;
if (count !== 1) {
  throw new Error(`${file}: expected the default module line exactly once, found it ${count} times ` +
    "(a new wasm-bindgen changed its glue: update scripts/relaxed_glue.mjs)");
}
const exportAt = glue.lastIndexOf("\nexport {");
if (exportAt < 0) throw new Error(`${file}: no export statement to put the relaxed SIMD probe before`);
const out = glue.slice(0, exportAt) + PROBE + glue.slice(exportAt);
fs.writeFileSync(file, out.replace(DEFAULT, PICKED));
