// sewd/threads does not survive bundling: wasm-bindgen-rayon starts each pool worker
// from the module's own URL, which a bundle no longer has. So the app serves the
// package's threads/ directory as static files (copied into Vite's public/) and
// imports it by URL at run time.
const THREADS = new URL("/sewd-threads/sewd.js", self.location.href).href;
const ready = (async () => {
  const sewd = await import(/* @vite-ignore */ THREADS);
  await sewd.default();
  await sewd.initThreadPool(2);
  const rec = await sewd.Recognizer.load(new URL("/model/", self.location.href).href, { backend: "cpu", cache: false });
  return { sewd, rec };
})();

self.onmessage = async ({ data: { samples, sampleRate } }) => {
  try {
    const { sewd, rec } = await ready;
    const { text } = await rec.transcribe(new Float32Array(samples), sampleRate);
    self.postMessage({ features: sewd.wasmFeatures(), text });
  } catch (err) {
    self.postMessage({ error: String(err?.message || err) });
  }
};
