//! Audio input: WAV decoding, resampling, validation, normalization.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use sewd::audio::{
    normalize, prepare, read_wav, read_wav_file, resample, validate, Audio, AudioError, MODEL_RATE,
};

// ---------------------------------------------------------------- helpers

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

fn sine(freq: f64, amp: f64, rate: u32, secs: f64) -> Vec<f32> {
    let n = (rate as f64 * secs).round() as usize;
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
        .collect()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Frequency of the strongest component, refined by a fine DFT search
/// around the zero-crossing estimate.
fn dominant_freq(x: &[f32], rate: u32) -> f64 {
    let crossings = x
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    let rough = crossings as f64 / 2.0 / (x.len() as f64 / rate as f64);
    let power = |f: f64| {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * PI * f * i as f64 / rate as f64;
            re += v as f64 * ph.cos();
            im += v as f64 * ph.sin();
        }
        re * re + im * im
    };
    let mut best = (rough, power(rough));
    let mut f = rough - 5.0;
    while f <= rough + 5.0 {
        let p = power(f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.05;
    }
    best.0
}

#[derive(Clone, Copy)]
enum Fmt {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
}

/// Minimal WAV writer (own code, independent of the reader under test).
/// `extensible` wraps the format in WAVE_FORMAT_EXTENSIBLE. Extra chunks
/// are inserted before `data` to exercise chunk skipping.
fn write_wav(frames: &[Vec<f64>], rate: u32, fmt: Fmt, extensible: bool) -> Vec<u8> {
    let channels = frames.first().map_or(1, |f| f.len()) as u16;
    let (bytes, code): (u16, u16) = match fmt {
        Fmt::U8 => (1, 1),
        Fmt::I16 => (2, 1),
        Fmt::I24 => (3, 1),
        Fmt::I32 => (4, 1),
        Fmt::F32 => (4, 3),
        Fmt::F64 => (8, 3),
    };
    let mut data = Vec::new();
    for frame in frames {
        for &v in frame {
            match fmt {
                Fmt::U8 => data.push((v * 128.0 + 128.0).round().clamp(0.0, 255.0) as u8),
                Fmt::I16 => data
                    .extend(((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes()),
                Fmt::I24 => {
                    let i = (v * 8388608.0).round().clamp(-8388608.0, 8388607.0) as i32;
                    data.extend(&i.to_le_bytes()[..3]);
                }
                Fmt::I32 => data.extend(
                    ((v * 2147483648.0)
                        .round()
                        .clamp(-2147483648.0, 2147483647.0) as i32)
                        .to_le_bytes(),
                ),
                Fmt::F32 => data.extend((v as f32).to_le_bytes()),
                Fmt::F64 => data.extend(v.to_le_bytes()),
            }
        }
    }
    let block = channels * bytes;
    let mut fmt_chunk = Vec::new();
    fmt_chunk.extend((if extensible { 0xFFFEu16 } else { code }).to_le_bytes());
    fmt_chunk.extend(channels.to_le_bytes());
    fmt_chunk.extend(rate.to_le_bytes());
    fmt_chunk.extend((rate * block as u32).to_le_bytes());
    fmt_chunk.extend(block.to_le_bytes());
    fmt_chunk.extend((bytes * 8).to_le_bytes());
    if extensible {
        fmt_chunk.extend(22u16.to_le_bytes());
        fmt_chunk.extend((bytes * 8).to_le_bytes());
        fmt_chunk.extend(0u32.to_le_bytes());
        fmt_chunk.extend(code.to_le_bytes());
        fmt_chunk.extend([
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    }
    let mut out = Vec::new();
    out.extend(b"RIFF");
    out.extend(0u32.to_le_bytes()); // patched below
    out.extend(b"WAVE");
    chunk(&mut out, b"fmt ", &fmt_chunk);
    chunk(&mut out, b"LIST", b"INFOodd"); // odd size: checks pad-byte handling
    chunk(&mut out, b"data", &data);
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    out
}

fn chunk(out: &mut Vec<u8>, id: &[u8; 4], body: &[u8]) {
    out.extend(id);
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
}

fn mono(values: &[f64]) -> Vec<Vec<f64>> {
    values.iter().map(|&v| vec![v]).collect()
}

// ---------------------------------------------------------------- resampling

#[test]
fn sine_44k1_to_16k_keeps_frequency_and_level() {
    let x = sine(1000.0, 0.5, 44_100, 2.0);
    let y = resample(&x, 44_100, MODEL_RATE).unwrap();
    assert_eq!(y.len(), 32_000);
    let f = dominant_freq(&y, MODEL_RATE);
    assert!((f - 1000.0).abs() < 1.0, "frequency {f}");
    let (rx, ry) = (rms(&x), rms(&y[1600..30_400]));
    assert!((ry / rx - 1.0).abs() < 0.01, "rms {rx} -> {ry}");
    // Time-aligned: output n is the input at n / 16000 s.
    let want = sine(1000.0, 0.5, MODEL_RATE, 2.0);
    let worst = y[160..31_840]
        .iter()
        .zip(&want[160..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        worst < 1e-4,
        "max deviation from the ideal 16 kHz sine: {worst}"
    );
}

#[test]
fn resampled_lengths() {
    let len = |n: usize, from, to| resample(&vec![0.1f32; n], from, to).unwrap().len();
    assert_eq!(len(48_000, 48_000, 16_000), 16_000);
    assert_eq!(len(48_001, 48_000, 16_000), 16_000);
    assert_eq!(len(48_002, 48_000, 16_000), 16_001);
    assert_eq!(len(8_000, 8_000, 16_000), 16_000);
    assert_eq!(len(8_001, 8_000, 16_000), 16_002);
    assert_eq!(len(22_050, 22_050, 16_000), 16_000);
    assert_eq!(len(12_345, 22_050, 16_000), 8_958); // 8957.82
    assert_eq!(len(44_100 * 3 + 7, 44_100, 16_000), 48_003); // 48002.54
    assert_eq!(len(1234, 16_000, 16_000), 1234);
}

#[test]
fn upsampling_and_other_rates_keep_the_tone() {
    for (from, freq) in [(8_000u32, 440.0), (22_050, 3000.0), (48_000, 5000.0)] {
        let x = sine(freq, 0.5, from, 1.0);
        let y = resample(&x, from, MODEL_RATE).unwrap();
        let f = dominant_freq(&y, MODEL_RATE);
        assert!((f - freq).abs() < 1.0, "{from} Hz: {f}");
        let r = rms(&y[800..15_200]) / rms(&x);
        assert!((r - 1.0).abs() < 0.01, "{from} Hz: level ratio {r}");
    }
}

#[test]
fn downsampling_removes_content_above_nyquist() {
    // 12 kHz would alias to 4 kHz at 16 kHz; it must be filtered out.
    let x = sine(12_000.0, 0.5, 48_000, 1.0);
    let y = resample(&x, 48_000, MODEL_RATE).unwrap();
    let r = rms(&y[800..15_200]) / rms(&x);
    assert!(r < 1e-3, "alias level {r}");
    // Close to, but below, the new Nyquist frequency still passes.
    let x = sine(7_000.0, 0.5, 44_100, 1.0);
    let y = resample(&x, 44_100, MODEL_RATE).unwrap();
    let r = rms(&y[800..15_200]) / rms(&x);
    assert!((r - 1.0).abs() < 0.01, "7 kHz level {r}");
}

#[test]
fn equal_rates_is_identity() {
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
    assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
}

// ---------------------------------------------------------------- WAV reader

#[test]
fn reads_every_pcm_width_and_float() {
    let values = [0.0, 0.5, -0.5, 0.25, -1.0, 0.999];
    for (fmt, tol) in [
        (Fmt::U8, 1.0 / 128.0),
        (Fmt::I16, 1.0 / 32768.0),
        (Fmt::I24, 1.0 / 8388608.0),
        (Fmt::I32, 1e-7),
        (Fmt::F32, 1e-7),
        (Fmt::F64, 1e-7),
    ] {
        for extensible in [false, true] {
            let bytes = write_wav(&mono(&values), 16_000, fmt, extensible);
            let a = read_wav(&bytes, "t.wav").unwrap();
            assert_eq!(a.sample_rate, 16_000);
            assert_eq!(a.samples.len(), values.len());
            for (got, want) in a.samples.iter().zip(values) {
                assert!(
                    (*got as f64 - want).abs() <= tol,
                    "{got} vs {want} (tol {tol})"
                );
            }
        }
    }
}

#[test]
fn integer_scaling_matches_soundfile() {
    // Exact values: int / 2^(bits-1); 8-bit is unsigned, (x - 128) / 128.
    let a = read_wav(&write_wav(&mono(&[-1.0, 0.5]), 8000, Fmt::I16, false), "x").unwrap();
    assert_eq!(a.samples, vec![-1.0, 0.5]);
    let a = read_wav_file(&fixture("pcm8_mono_8000.wav")).unwrap();
    assert_eq!(a.sample_rate, 8000);
    assert_eq!(a.samples, vec![-1.0, -0.5, 0.0, 0.5, 127.0 / 128.0]);
    let a = read_wav_file(&fixture("pcm24_mono_48000.wav")).unwrap();
    assert_eq!(a.sample_rate, 48_000);
    assert_eq!(
        a.samples,
        vec![
            0.0,
            0.5,
            -1.0,
            (8388607.0f64 / 8388608.0) as f32,
            (-1.0f64 / 8388608.0) as f32
        ]
    );
}

#[test]
fn stereo_is_averaged() {
    let frames = vec![vec![0.5, -0.5], vec![0.25, 0.75], vec![-1.0, 0.0]];
    for fmt in [Fmt::I16, Fmt::F32] {
        let a = read_wav(&write_wav(&frames, 44_100, fmt, false), "s.wav").unwrap();
        assert_eq!(a.samples, vec![0.0, 0.5, -0.5]);
        assert_eq!(a.sample_rate, 44_100);
    }
    // Written by Python's `wave` module: (0,0) (16384,-16384) (32767,32767) (-32768,0).
    let a = read_wav_file(&fixture("pcm16_stereo_22050.wav")).unwrap();
    assert_eq!(a.sample_rate, 22_050);
    assert_eq!(a.samples, vec![0.0, 0.0, 32767.0 / 32768.0, -0.5]);
    // Four channels.
    let frames = vec![vec![1.0, 0.5, 0.0, -0.5]];
    let a = read_wav(&write_wav(&frames, 16_000, Fmt::F32, true), "q.wav").unwrap();
    assert_eq!(a.samples, vec![0.25]);
}

#[test]
fn agrees_with_hound_writer() {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for (l, r) in [(1000i16, 3000i16), (-32768, -32768), (7, 8)] {
            w.write_sample(l).unwrap();
            w.write_sample(r).unwrap();
        }
        w.finalize().unwrap();
    }
    let a = read_wav(cursor.get_ref(), "hound.wav").unwrap();
    assert_eq!(a.samples, vec![2000.0 / 32768.0, -1.0, 7.5 / 32768.0]);
}

#[test]
fn data_chunk_longer_than_file_is_read_up_to_the_last_frame() {
    let mut bytes = write_wav(&mono(&[0.5, 0.25, -0.25]), 16_000, Fmt::I16, false);
    bytes.pop(); // cut half of the last sample; the header still claims 6 bytes
    let a = read_wav(&bytes, "cut.wav").unwrap();
    assert_eq!(a.samples, vec![0.5, 0.25]);
}

/// A recorder stopped before it wrote the sizes: RIFF and data sizes 0.
/// The samples after the data header are the audio (libsndfile reads them too).
#[test]
fn unfinalized_header_reads_the_rest_of_the_file() {
    let mut bytes = write_wav(&mono(&[0.5, 0.25, -0.25, 0.125]), 16_000, Fmt::I16, false);
    let data_at = bytes.windows(4).position(|w| w == b"data").unwrap();
    bytes[data_at + 4..data_at + 8].copy_from_slice(&0u32.to_le_bytes());
    bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
    let a = read_wav(&bytes, "unfinished.wav").unwrap();
    assert_eq!(a.samples, vec![0.5, 0.25, -0.25, 0.125]);
}

fn err(bytes: &[u8]) -> String {
    read_wav(bytes, "bad.wav").unwrap_err().to_string()
}

#[test]
fn bad_input_errors_name_the_problem() {
    let e = err(b"ID3\x03\x00 this is an mp3");
    assert!(e.starts_with("bad.wav: not a WAV file"), "{e}");
    let e = err(b"");
    assert!(e.contains("not a WAV file") && e.contains("empty"), "{e}");
    let e = err(b"RIFF\x10\x00\x00\x00AVI LIST");
    assert!(e.contains("not a WAV file"), "{e}");

    let good = write_wav(&mono(&[0.5, 0.25]), 16_000, Fmt::I16, false);
    // Truncated anywhere in the headers: an error, never a panic.
    for cut in 0..62 {
        assert!(read_wav(&good[..cut], "bad.wav").is_err(), "cut at {cut}");
    }
    assert!(err(&good[..6]).contains("truncated RIFF header"));
    assert!(err(&good[..12]).contains("no fmt chunk"));
    assert!(err(&good[..40]).contains("no data chunk"));
    assert!(err(&good[..30]).contains("truncated fmt chunk"));

    // Zero channels.
    let mut b = good.clone();
    b[22] = 0;
    assert!(err(&b).contains("zero channels"), "{}", err(&b));
    // Unsupported codec: code and bits in the message.
    let mut b = good.clone();
    b[20] = 0x02;
    b[34] = 4;
    let e = err(&b);
    assert!(
        e.contains("unsupported WAV format") && e.contains("0x0002") && e.contains("4 bits"),
        "{e}"
    );
    // 12-bit float does not exist.
    let mut b = good.clone();
    b[20] = 0x03;
    let e = err(&b);
    assert!(e.contains("0x0003") && e.contains("16 bits"), "{e}");

    // No samples at all.
    let empty = write_wav(&[], 16_000, Fmt::I16, false);
    assert_eq!(err(&empty), "bad.wav: empty audio (no samples)");
}

#[test]
fn missing_file_error_names_the_path() {
    let p = fixture("does-not-exist.wav");
    let e = read_wav_file(&p).unwrap_err();
    assert!(matches!(e, AudioError::Io { .. }));
    let msg = e.to_string();
    assert!(msg.contains("does-not-exist.wav"), "{msg}");
}

// ---------------------------------------------------------------- validate / normalize / prepare

#[test]
fn validate_rejects_unusable_audio() {
    assert!(validate(&[], "a")
        .unwrap_err()
        .to_string()
        .contains("empty audio"));
    assert!(validate(&[0.1], "a")
        .unwrap_err()
        .to_string()
        .contains("only one sample"));
    let mut x = vec![0.0f32; 200];
    x[123] = f32::NAN;
    assert_eq!(
        validate(&x, "a.wav").unwrap_err().to_string(),
        "a.wav: sample 123 is NaN"
    );
    x[123] = f32::INFINITY;
    assert_eq!(
        validate(&x, "a.wav").unwrap_err().to_string(),
        "a.wav: sample 123 is inf"
    );

    // NaN stored in a float WAV survives reading and is caught by prepare.
    let bytes = write_wav(&mono(&[0.0, f64::NAN, 0.0]), 16_000, Fmt::F32, false);
    let a = read_wav(&bytes, "nan.wav").unwrap();
    let e = prepare(a, true).unwrap_err().to_string();
    assert!(e.contains("sample 1 is NaN"), "{e}");
    let one = write_wav(&mono(&[0.5]), 16_000, Fmt::I16, false);
    let e = prepare(read_wav(&one, "one.wav").unwrap(), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only one sample"), "{e}");
}

#[test]
fn normalize_matches_hand_computation() {
    let mut x = vec![0.0f32, 0.5, -0.25, 1.0, 0.25];
    normalize(&mut x);
    // mean = 0.3, population var = (0.09 + 0.04 + 0.3025 + 0.49 + 0.0025) / 5 = 0.185
    let s = (0.185f64 + 1e-7).sqrt();
    let want: Vec<f32> = [-0.3, 0.2, -0.55, 0.7, -0.05]
        .iter()
        .map(|v| (v / s) as f32)
        .collect();
    for (a, b) in x.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
    // Silence stays zero (the 1e-7 guards the division).
    let mut z = vec![0.0f32; 10];
    normalize(&mut z);
    assert!(z.iter().all(|&v| v == 0.0));
}

#[test]
fn prepare_resamples_to_model_rate() {
    let audio = Audio {
        samples: sine(440.0, 0.3, 44_100, 1.0),
        sample_rate: 44_100,
    };
    let raw = prepare(audio.clone(), false).unwrap();
    assert_eq!(raw.len(), 16_000);
    assert!((rms(&raw[800..15_200]) - 0.3 / 2f64.sqrt()).abs() < 0.003);
    let norm = prepare(audio, true).unwrap();
    assert!((rms(&norm) - 1.0).abs() < 1e-4);
    let same = Audio {
        samples: vec![0.1, -0.1, 0.2],
        sample_rate: MODEL_RATE,
    };
    assert_eq!(prepare(same, false).unwrap(), vec![0.1, -0.1, 0.2]);
}
