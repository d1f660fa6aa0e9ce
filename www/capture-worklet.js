// AudioWorklet processor: captures the microphone at the device rate, mono.
//
// Audio goes straight to the model worker over a MessagePort handed in by the
// page (no hop through the main thread), in ~100 ms Float32 chunks. The page
// gets only a level (RMS, peak) a few times a second for the meter.
// Resampling to the model rate is the Recognizer's job.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const chunkMs = options.processorOptions?.chunkMs ?? 100;
    this.chunkSize = Math.max(128, Math.round((sampleRate * chunkMs) / 1000));
    this.buffer = new Float32Array(this.chunkSize);
    this.filled = 0;
    this.sink = null; // MessagePort to the worker
    this.levelSum = 0;
    this.levelPeak = 0;
    this.levelCount = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "sink") {
        this.sink = m.port;
      } else if (m.type === "flush") {
        // Sent once on stop: the tail, then an end marker on the same port,
        // so the worker sees every sample before it finishes the stream.
        this.sendChunk();
        this.sink?.postMessage({ type: "end" });
        this.running = false;
        this.port.postMessage({ type: "flushed" });
      }
    };
  }

  sendChunk() {
    if (this.filled === 0 || !this.sink) return;
    const chunk = this.buffer.slice(0, this.filled);
    this.sink.postMessage({ type: "chunk", samples: chunk, sampleRate }, [chunk.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const frames = input[0].length;
    const channels = input.length;
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels; c++) s += input[c][i];
      s /= channels;
      this.buffer[this.filled++] = s;
      this.levelSum += s * s;
      const a = Math.abs(s);
      if (a > this.levelPeak) this.levelPeak = a;
      if (this.filled === this.chunkSize) this.sendChunk();
    }
    this.levelCount += frames;
    if (this.levelCount >= sampleRate / 20) {
      this.port.postMessage({ type: "level", rms: Math.sqrt(this.levelSum / this.levelCount), peak: this.levelPeak });
      this.levelSum = 0;
      this.levelPeak = 0;
      this.levelCount = 0;
    }
    return true;
  }
}

registerProcessor("sewd-capture", CaptureProcessor);
