// The threaded module runs in a Worker (its pool blocks the calling thread); Vite
// bundles the worker, not the module (see threads-worker.js).
const worker = new Worker(new URL("./threads-worker.js", import.meta.url), { type: "module" });
const pending = [];
worker.onmessage = ({ data }) => pending.shift()?.(data);

window.transcribe = (samples, sampleRate) =>
  new Promise((resolve) => {
    pending.push(resolve);
    worker.postMessage({ samples, sampleRate });
  });
window.appReady = true;
