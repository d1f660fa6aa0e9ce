//! Band-limited sample-rate conversion on top of rubato's windowed-sinc
//! resampler, turned into a whole-clip, delay-free function.
//!
//! * Filter: Blackman-Harris² windowed sinc, 256 taps at the lower of the two
//!   rates (so the transition band, relative to the output Nyquist frequency,
//!   is the same for every ratio), cut-off from `rubato::calculate_cutoff`
//!   (≈ 0.95 of the lower Nyquist frequency).
//! * When the reduced ratio `to/from = p/q` has a small numerator (all common
//!   audio rates: 44.1k→16k is 160/441), the filter bank is oversampled by
//!   exactly `p` and no interpolation between filter phases is needed; the
//!   conversion is then an exact polyphase FIR. Otherwise cubic interpolation
//!   between 256 filter phases is used.
//! * Time alignment: output sample `n` corresponds to input time
//!   `n * from / to`. rubato's output lags the input by a fixed amount; it is
//!   removed by feeding a few leading zeros and dropping the first outputs,
//!   chosen so that the remaining offset is zero (exact for the polyphase
//!   case, within 1/p of an input sample otherwise).
//! * Output length is `round(len * to / from)`.

use rubato::{
    calculate_cutoff, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::AudioError;

/// Filter taps at the lower of the two rates.
const BASE_SINC_LEN: usize = 256;
/// Largest ratio between the two rates accepted.
const MAX_RATIO: u32 = 64;
/// Largest `p` for which the exact polyphase (Nearest) mode is used.
const MAX_EXACT_PHASES: u64 = 1024;
/// Largest filter table (taps × phases, in f32) for the exact mode.
const MAX_TABLE: u64 = 1 << 22;
/// Phases used when interpolating between them (cubic mode).
const CUBIC_PHASES: usize = 256;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The most samples `resample` returns: 1 GiB of f32, 4.7 hours at 16 kHz.
pub const MAX_OUTPUT_SAMPLES: usize = 1 << 28;

fn resample_error(from_rate: u32, to_rate: u32, detail: impl Into<String>) -> AudioError {
    AudioError::Resample {
        from_rate,
        to_rate,
        detail: detail.into(),
    }
}

/// Number of output samples for `len` input samples: `round(len * to / from)`
/// (halves round up).
pub fn resampled_len(len: usize, from_rate: u32, to_rate: u32) -> usize {
    if from_rate == 0 {
        return 0;
    }
    let n = (len as u128 * to_rate as u128 * 2 + from_rate as u128) / (2 * from_rate as u128);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Resample mono `samples` from `from_rate` to `to_rate` Hz.
///
/// Band-limited (windowed-sinc, anti-aliased when downsampling), time-aligned
/// with the input (no filter delay), output length `round(len * to / from)`.
/// Equal rates return a copy of the input; empty input gives empty output.
pub fn resample(samples: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>, AudioError> {
    if from_rate == 0 || to_rate == 0 {
        return Err(resample_error(
            from_rate,
            to_rate,
            "sample rates must be positive",
        ));
    }
    if from_rate == to_rate {
        return Ok(samples.to_vec());
    }
    if from_rate / to_rate >= MAX_RATIO || to_rate / from_rate >= MAX_RATIO {
        return Err(resample_error(
            from_rate,
            to_rate,
            format!("the ratio between the rates must be below {MAX_RATIO}"),
        ));
    }
    let out_len = resampled_len(samples.len(), from_rate, to_rate);
    if out_len == 0 {
        return Ok(Vec::new());
    }
    if out_len > MAX_OUTPUT_SAMPLES {
        // Upsampling multiplies memory (a 100 MB 8-bit WAV at 251 Hz would be
        // 25 GB at 16 kHz); no model pass could use that much audio anyway.
        return Err(resample_error(
            from_rate,
            to_rate,
            format!(
                "{} input samples would become {out_len}, over the limit of {MAX_OUTPUT_SAMPLES} ({:.1} hours at {to_rate} Hz): split the audio",
                samples.len(),
                MAX_OUTPUT_SAMPLES as f64 / to_rate as f64 / 3600.0
            ),
        ));
    }

    let g = gcd(from_rate as u64, to_rate as u64);
    let p = to_rate as u64 / g; // output step count
    let q = from_rate as u64 / g; // input step count
    let ratio = to_rate as f64 / from_rate as f64;
    let step = q as f64 / p as f64; // input samples per output sample

    // Filter length in input samples: BASE_SINC_LEN at the lower rate.
    let sinc_len = if ratio < 1.0 {
        ((BASE_SINC_LEN as f64 / ratio / 8.0).ceil() as usize) * 8
    } else {
        BASE_SINC_LEN
    };
    let exact = p <= MAX_EXACT_PHASES && (sinc_len as u64) * p <= MAX_TABLE;
    let (phases, interpolation) = if exact {
        (p as usize, SincInterpolationType::Nearest)
    } else {
        (CUBIC_PHASES, SincInterpolationType::Cubic)
    };
    let window = WindowFunction::BlackmanHarris2;
    let params = SincInterpolationParameters {
        sinc_len,
        f_cutoff: calculate_cutoff::<f32>(BASE_SINC_LEN, window),
        oversampling_factor: phases,
        interpolation,
        window,
    };

    // rubato (SincFixedIn, 0.16) produces output `n` at input time
    // `(n + 1) * step - 1 + 1 / phases`. With `d` zeros prepended and the
    // first `k` outputs dropped, output `n` sits at input time
    // `(n + k + 1) * step - 1 + 1 / phases - d`; pick k (and d = that
    // constant, rounded) so the offset vanishes.
    let mut best = (0usize, 0usize, f64::INFINITY); // (k, d, error)
    let search = (p as usize).clamp(1, 4096);
    for k in 0..search {
        let offset = (k as f64 + 1.0) * step - 1.0 + 1.0 / phases as f64;
        let d = offset.round().max(0.0);
        let err = (offset - d).abs();
        if err < best.2 - 1e-9 {
            best = (k, d as usize, err);
            if err < 1e-9 {
                break;
            }
        }
    }
    let (skip, lead, _) = best;

    let min_chunk = 4 * (sinc_len + 2 + step.ceil() as usize);
    let chunk = min_chunk.max(4096);
    let mut resampler = SincFixedIn::<f32>::new(ratio, 1.0, params, chunk, 1)
        .map_err(|e| resample_error(from_rate, to_rate, e.to_string()))?;

    let wanted = skip + out_len;
    let total_in = lead + samples.len();
    // Input needed to push `wanted` outputs through, plus the filter's
    // look-ahead and rubato's per-chunk margin; bounds the loop.
    let max_chunks = (total_in + 4 * sinc_len + 4 * step.ceil() as usize + 64) / chunk + 3;

    let mut out: Vec<f32> = Vec::with_capacity(wanted + resampler.output_frames_max());
    let mut inbuf = vec![vec![0f32; chunk]];
    let mut outbuf = resampler.output_buffer_allocate(true);
    let mut consumed = 0usize; // position in the virtual input `lead zeros ++ samples`
    for _ in 0..max_chunks {
        if out.len() >= wanted {
            break;
        }
        let buf = &mut inbuf[0];
        for (i, v) in buf.iter_mut().enumerate() {
            let t = consumed + i;
            *v = if t < lead {
                0.0
            } else {
                samples.get(t - lead).copied().unwrap_or(0.0)
            };
        }
        consumed += chunk;
        let (_, produced) = resampler
            .process_into_buffer(&inbuf, &mut outbuf, None)
            .map_err(|e| resample_error(from_rate, to_rate, e.to_string()))?;
        out.extend_from_slice(&outbuf[0][..produced]);
    }
    if out.len() < wanted {
        return Err(resample_error(
            from_rate,
            to_rate,
            format!("resampler produced {} of {} samples", out.len(), wanted),
        ));
    }
    out.truncate(wanted);
    out.drain(..skip);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, len: usize, phase: f64) -> Vec<f32> {
        (0..len)
            .map(|n| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * n as f64 / rate as f64 + phase).sin())
                    as f32
            })
            .collect()
    }

    /// Output sample n must be the input signal at time n / to_rate.
    fn check_alignment(from: u32, to: u32, freq: f64, tol: f32) {
        let len = from as usize; // 1 s
        let x = sine(freq, from, len, 0.3);
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len(), resampled_len(len, from, to));
        let expect = sine(freq, to, y.len(), 0.3);
        // Skip the edges, where the signal starts/stops abruptly.
        let margin = (to as usize) / 20;
        let worst = y[margin..y.len() - margin]
            .iter()
            .zip(&expect[margin..])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < tol, "{from}->{to} @ {freq} Hz: max error {worst}");
    }

    #[test]
    fn time_aligned_common_rates() {
        check_alignment(44_100, 16_000, 1000.0, 5e-5);
        check_alignment(48_000, 16_000, 3000.0, 5e-5);
        check_alignment(22_050, 16_000, 2500.0, 5e-5);
        check_alignment(8_000, 16_000, 1000.0, 5e-5);
        check_alignment(16_000, 44_100, 1000.0, 5e-5);
        check_alignment(11_025, 16_000, 700.0, 5e-5);
    }

    #[test]
    fn time_aligned_odd_ratio() {
        // p = 16000 / gcd: large numerator, interpolated (cubic) mode.
        check_alignment(44_101, 16_000, 1000.0, 5e-5);
        check_alignment(15_999, 16_000, 1000.0, 5e-5);
    }

    #[test]
    fn impulse_lands_at_scaled_time() {
        // An impulse at input sample 4410 (0.1 s at 44.1 kHz) must peak at
        // output sample 1600.
        let mut x = vec![0f32; 44_100];
        x[4410] = 1.0;
        let y = resample(&x, 44_100, 16_000).unwrap();
        let peak = y
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
        assert_eq!(peak.0, 1600);
    }

    #[test]
    fn short_and_edge_inputs() {
        assert!(resample(&[], 44_100, 16_000).unwrap().is_empty());
        assert_eq!(
            resample(&[0.5, 0.25], 16_000, 16_000).unwrap(),
            vec![0.5, 0.25]
        );
        assert_eq!(resample(&[0.1; 3], 8_000, 16_000).unwrap().len(), 6);
        assert_eq!(resample(&[0.1; 5], 48_000, 16_000).unwrap().len(), 2);
        assert!(resample(&[0.1; 5], 0, 16_000).is_err());
        assert!(resample(&[0.1; 5], 16_000, 0).is_err());
        assert!(resample(&[0.1; 5], 16_000 * 64, 16_000).is_err());
        // An upsampled length past the limit is refused before any allocation.
        let input = vec![0.0f32; MAX_OUTPUT_SAMPLES / 62];
        let e = resample(&input, 254, 16_000).unwrap_err().to_string();
        assert!(e.contains("over the limit") && e.contains("254"), "{e}");
    }

    #[test]
    fn rounding_of_length() {
        assert_eq!(resampled_len(3, 48_000, 16_000), 1);
        assert_eq!(resampled_len(2, 48_000, 16_000), 1); // 0.667 → 1
        assert_eq!(resampled_len(1, 48_000, 16_000), 0); // 0.333 → 0
        assert_eq!(resampled_len(88_200, 44_100, 16_000), 32_000);
        assert_eq!(resampled_len(100, 22_050, 16_000), 73); // 72.56
    }
}
