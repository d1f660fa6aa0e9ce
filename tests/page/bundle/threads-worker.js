// sewd/threads bundled into a worker: bundlers resolve it to pkg/threads-bundler/ (the
// package's "module" condition), whose pool workers are a `new Worker(new URL(...))`
// they can follow.
import init, { initThreadPool, Recognizer, wasmFeatures } from "sewd/threads";

const ready = (async () => {
  await init();
  await initThreadPool(2);
  return Recognizer.load(new URL("/model/", self.location.href).href, { backend: "cpu", cache: false });
})();

self.onmessage = async ({ data: { samples, sampleRate } }) => {
  try {
    const rec = await ready;
    const { text } = await rec.transcribe(new Float32Array(samples), sampleRate);
    self.postMessage({ features: wasmFeatures(), text });
  } catch (err) {
    self.postMessage({ error: String(err?.message || err) });
  }
};
