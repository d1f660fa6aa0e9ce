// A web developer's app in miniature: it imports the npm package `sewd` and lets
// Vite bundle it (tests/page/bundle.test.mjs builds and opens it).
import init, { Recognizer, wasmFeatures } from "sewd";

window.transcribe = async (samples, sampleRate) => {
  await init();
  const rec = await Recognizer.load(new URL("./model/", location.href).href, { backend: "cpu", cache: false });
  const { text } = await rec.transcribe(new Float32Array(samples), sampleRate);
  rec.free();
  return { features: wasmFeatures(), text };
};
window.appReady = true;
