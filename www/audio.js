// Audio files in, mono Float32 samples out; and a WAV writer for recordings.
//
// WAV is parsed here rather than by decodeAudioData, which resamples to the
// AudioContext's rate: reading the samples as they are gives the page the
// same input as `sewd transcribe`, so both print the same transcript.
// Other formats (mp3, ogg, flac, ...) go through decodeAudioData.

/** Decodes an audio file (ArrayBuffer) to `{ samples: Float32Array, sampleRate }`. */
export async function decodeAudioFile(bytes, name = "") {
  const wav = parseWav(bytes);
  if (wav) return wav;
  if (typeof OfflineAudioContext === "undefined") {
    throw new Error(`${name || "file"}: this browser cannot decode compressed audio (no Web Audio API)`);
  }
  // Decoding at 48 kHz keeps the browser's resampler out of the way for most
  // files; the Recognizer brings it to the model rate.
  const ctx = new OfflineAudioContext(1, 1, 48000);
  let buffer;
  try {
    buffer = await ctx.decodeAudioData(bytes.slice(0));
  } catch (err) {
    throw new Error(`${name || "file"}: the browser could not decode it (${err?.message || err}); try WAV, MP3, OGG or FLAC`);
  }
  return { samples: mixDown(buffer), sampleRate: buffer.sampleRate };
}

function mixDown(buffer) {
  const n = buffer.length;
  if (buffer.numberOfChannels === 1) return buffer.getChannelData(0).slice();
  const out = new Float32Array(n);
  const channels = [];
  for (let c = 0; c < buffer.numberOfChannels; c++) channels.push(buffer.getChannelData(c));
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const ch of channels) s += ch[i];
    out[i] = s / channels.length;
  }
  return out;
}

/**
 * RIFF/WAVE: integer PCM (8/16/24/32 bit), float 32/64, also as
 * WAVE_FORMAT_EXTENSIBLE. Integers scale by 2^(bits-1) of the container,
 * channels average to mono, as the Rust reader does. Returns null for
 * anything that is not a WAV file or uses another codec.
 */
export function parseWav(bytes) {
  const v = new DataView(bytes);
  const tag = (o) => String.fromCharCode(v.getUint8(o), v.getUint8(o + 1), v.getUint8(o + 2), v.getUint8(o + 3));
  if (v.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return null;
  let fmt = null;
  let data = null;
  for (let o = 12; o + 8 <= v.byteLength; ) {
    const id = tag(o);
    const size = v.getUint32(o + 4, true);
    const body = o + 8;
    if (id === "fmt " && size >= 16) {
      let code = v.getUint16(body, true);
      if (code === 0xfffe && size >= 26) code = v.getUint16(body + 24, true);
      fmt = {
        code,
        channels: v.getUint16(body + 2, true),
        rate: v.getUint32(body + 4, true),
        align: v.getUint16(body + 12, true),
        bits: v.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      data = { offset: body, length: Math.min(size, v.byteLength - body) };
      break;
    }
    o = body + size + (size & 1);
  }
  if (!fmt || !data || fmt.channels === 0) return null;
  const container = fmt.align && fmt.align % fmt.channels === 0 ? fmt.align / fmt.channels : Math.ceil(fmt.bits / 8);
  const read = sampleReader(v, fmt.code, container);
  if (!read) return null;
  const frameBytes = container * fmt.channels;
  const frames = Math.floor(data.length / frameBytes);
  const samples = new Float32Array(frames);
  for (let f = 0; f < frames; f++) {
    const base = data.offset + f * frameBytes;
    let s = 0;
    for (let c = 0; c < fmt.channels; c++) s += read(base + c * container);
    samples[f] = s / fmt.channels;
  }
  return { samples, sampleRate: fmt.rate };
}

function sampleReader(v, code, bytes) {
  if (code === 1) {
    const scale = 1 / 2 ** (bytes * 8 - 1);
    switch (bytes) {
      case 1: return (o) => (v.getUint8(o) - 128) / 128;
      case 2: return (o) => v.getInt16(o, true) * scale;
      case 3: return (o) => ((v.getUint8(o) | (v.getUint8(o + 1) << 8) | (v.getInt8(o + 2) << 16)) * scale);
      case 4: return (o) => v.getInt32(o, true) * scale;
    }
  } else if (code === 3) {
    if (bytes === 4) return (o) => v.getFloat32(o, true);
    if (bytes === 8) return (o) => v.getFloat64(o, true);
  }
  return null;
}

/** 16-bit PCM mono WAV of Float32 samples, as a Blob. */
export function encodeWav(samples, sampleRate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const put = (o, s) => { for (let i = 0; i < 4; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  put(0, "RIFF");
  v.setUint32(4, 36 + samples.length * 2, true);
  put(8, "WAVE");
  put(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  put(36, "data");
  v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + i * 2, Math.round(s * 32767), true);
  }
  return new Blob([buf], { type: "audio/wav" });
}
