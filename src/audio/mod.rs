//! Audio input: WAV decoding, resampling to the model rate, validation and
//! the zero-mean/unit-variance normalization of `Wav2Vec2FeatureExtractor`.

mod resample;
mod wav;

use thiserror::Error;

pub use resample::{resample, resampled_len};
pub use wav::read_wav;

/// Sample rate every SEW-D checkpoint expects.
pub const MODEL_RATE: u32 = 16_000;

/// Errors from reading, checking or converting audio. `origin` names the
/// file (or other source) the audio came from.
#[derive(Debug, Error)]
pub enum AudioError {
    #[error("cannot read audio file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a WAV file ({detail})")]
    NotWav { origin: String, detail: String },
    #[error("{origin}: malformed WAV file: {detail}")]
    Malformed { origin: String, detail: String },
    #[error("{origin}: unsupported WAV format: {detail}")]
    Unsupported { origin: String, detail: String },
    #[error("{origin}: empty audio (no samples)")]
    Empty { origin: String },
    #[error("{origin}: only one sample; at least two are needed")]
    SingleSample { origin: String },
    #[error("{origin}: sample {index} is {value}")]
    NonFinite {
        origin: String,
        index: usize,
        value: f32,
    },
    #[error("{origin}: invalid sample rate {rate} Hz")]
    InvalidSampleRate { origin: String, rate: u32 },
    #[error("cannot resample from {from_rate} Hz to {to_rate} Hz: {detail}")]
    Resample {
        from_rate: u32,
        to_rate: u32,
        detail: String,
    },
}

impl AudioError {
    /// Says where the target rate of a failed resample came from: in a
    /// pipeline it is the model's, the `sampling_rate` of
    /// `preprocessor_config.json`, which a user may not think of.
    pub(crate) fn with_model_rate_context(self) -> Self {
        match self {
            AudioError::Resample { from_rate, to_rate, detail } => AudioError::Resample {
                from_rate,
                to_rate,
                detail: format!(
                    "{detail} (the audio is {from_rate} Hz; the model takes {to_rate} Hz, the sampling_rate of preprocessor_config.json)"
                ),
            },
            e => e,
        }
    }
}

/// Mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    /// Duration in seconds (0 for a zero sample rate).
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.samples.len() as f64 / self.sample_rate as f64
        }
    }
}

/// Read a WAV file from disk; errors name `path`.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_wav_file(path: &std::path::Path) -> Result<Audio, AudioError> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read_wav(&bytes, &path.display().to_string())
}

/// Check that `samples` can be fed to the model: at least two samples, all
/// finite. Errors name `source` and, for NaN/infinity, the sample index.
pub fn validate(samples: &[f32], source: &str) -> Result<(), AudioError> {
    match samples.len() {
        0 => {
            return Err(AudioError::Empty {
                origin: source.to_string(),
            })
        }
        1 => {
            return Err(AudioError::SingleSample {
                origin: source.to_string(),
            })
        }
        _ => {}
    }
    if let Some((index, &value)) = samples.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(AudioError::NonFinite {
            origin: source.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

/// Zero-mean, unit-variance normalization in place, as
/// `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`:
/// `(x - mean) / sqrt(var + 1e-7)` with the population variance. Mean and
/// variance are accumulated in f64; results are stored as f32.
pub fn normalize(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = samples
        .iter()
        .map(|&x| {
            let d = x as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    let inv_std = 1.0 / (var + 1e-7).sqrt();
    for x in samples.iter_mut() {
        *x = ((*x as f64 - mean) * inv_std) as f32;
    }
}

/// Turn decoded audio into model input: validate, resample to
/// [`MODEL_RATE`], and normalize if `do_normalize` (the feature extractor's
/// `do_normalize` setting).
pub fn prepare(audio: Audio, do_normalize: bool) -> Result<Vec<f32>, AudioError> {
    const ORIGIN: &str = "input audio";
    if audio.sample_rate == 0 {
        return Err(AudioError::InvalidSampleRate {
            origin: ORIGIN.to_string(),
            rate: 0,
        });
    }
    validate(&audio.samples, ORIGIN)?;
    let mut samples = if audio.sample_rate == MODEL_RATE {
        audio.samples
    } else {
        let out = resample(&audio.samples, audio.sample_rate, MODEL_RATE)?;
        validate(
            &out,
            &format!("{ORIGIN} (after resampling to {MODEL_RATE} Hz)"),
        )?;
        out
    };
    if do_normalize {
        normalize(&mut samples);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_messages() {
        let e = validate(&[], "a.wav").unwrap_err().to_string();
        assert_eq!(e, "a.wav: empty audio (no samples)");
        let e = validate(&[0.0], "a.wav").unwrap_err().to_string();
        assert!(e.contains("only one sample"), "{e}");
        let e = validate(&[0.0, 1.0, f32::NAN], "a.wav")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a.wav: sample 2 is NaN");
        let e = validate(&[0.0, f32::NEG_INFINITY], "a.wav")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a.wav: sample 1 is -inf");
        assert!(validate(&[0.0, 0.0], "a.wav").is_ok());
    }

    #[test]
    fn normalize_by_hand() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        normalize(&mut x);
        // mean 2.5, population variance 1.25
        let s = (1.25f64 + 1e-7).sqrt();
        let want = [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s];
        for (a, b) in x.iter().zip(want) {
            assert_eq!(*a, b as f32);
        }
        let mut c = [3.0f32; 5];
        normalize(&mut c);
        assert_eq!(c, [0.0; 5]);
    }

    #[test]
    fn prepare_resamples_and_normalizes() {
        let samples: Vec<f32> = (0..8000)
            .map(|n| 0.1 + 0.3 * (n as f32 * 0.05).sin())
            .collect();
        let audio = Audio {
            samples,
            sample_rate: 8000,
        };
        let out = prepare(audio.clone(), false).unwrap();
        assert_eq!(out.len(), 16000);
        let out = prepare(audio, true).unwrap();
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / out.len() as f64;
        let var = out.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / out.len() as f64;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
        let err = prepare(
            Audio {
                samples: vec![0.0; 4],
                sample_rate: 0,
            },
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid sample rate 0"));
    }
}
