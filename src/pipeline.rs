//! A loaded model directory ready to use: audio in, transcript or label out.
//!
//! `Pipeline` ties the Hugging Face files together (config.json, weights,
//! vocab.json, preprocessor_config.json) the way transformers' processor +
//! model do, on whichever backend it is given.

use crate::audio::{self, Audio};
use crate::backend::Backend;
use crate::config::{PreprocessorConfig, SewdConfig};
use crate::model::{self, Head, ModelError, Options, Output, SewdModel};
use crate::tokenizer::{CtcTokenizer, Transcript};
use crate::weights::{TensorData, WeightStore};
use crate::Result;
#[cfg(not(target_arch = "wasm32"))]
use crate::Error;

/// The files of a model directory, already read.
pub struct ModelFiles {
    pub config_json: String,
    pub weights: WeightStore,
    pub vocab_json: Option<String>,
    pub preprocessor_json: Option<String>,
    /// Names the special tokens (the CTC blank among them) when they are
    /// not the `<pad>`, `<unk>`, `|` ... defaults.
    pub tokenizer_config_json: Option<String>,
}

impl ModelFiles {
    /// Reads a model directory in the Hugging Face layout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| -> Result<Option<String>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(&path, e)),
            }
        };
        if !dir.is_dir() {
            return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory")));
        }
        let config_json = read("config.json")?
            .ok_or_else(|| Error::io(dir.join("config.json"), std::io::Error::new(std::io::ErrorKind::NotFound, "missing: a model directory needs config.json")))?;
        Ok(ModelFiles {
            config_json,
            weights: WeightStore::load_dir(dir)?,
            vocab_json: read("vocab.json")?,
            preprocessor_json: read("preprocessor_config.json")?,
            tokenizer_config_json: read("tokenizer_config.json")?,
        })
    }
}

/// A classification result.
#[derive(Debug, Clone)]
pub struct Classification {
    pub label: String,
    pub score: f32,
    /// `(label, probability)` for every class, in id order.
    pub scores: Vec<(String, f32)>,
}

pub struct Pipeline<B: Backend> {
    pub backend: B,
    pub model: SewdModel<B>,
    pub tokenizer: Option<CtcTokenizer>,
    pub preprocessor: PreprocessorConfig,
}

impl<B: Backend> Pipeline<B> {
    pub fn new(backend: B, files: &ModelFiles) -> Result<Self> {
        let config = SewdConfig::from_json(&files.config_json, "config.json")?;
        let preprocessor = match &files.preprocessor_json {
            Some(j) => PreprocessorConfig::from_json(j, "preprocessor_config.json")?,
            None => PreprocessorConfig::default(),
        };
        let tokenizer = files
            .vocab_json
            .as_deref()
            .map(|vocab| CtcTokenizer::from_files(vocab, files.tokenizer_config_json.as_deref()))
            .transpose()?;
        let model = SewdModel::load(&backend, config, &files.weights)?;
        // A vocab may hold more tokens than the model has outputs (checkpoints
        // that list <s> and </s> after the characters): those ids are never
        // emitted, as in transformers. A blank beyond the outputs would be.
        if let (Head::Ctc, Some(t)) = (model.head, &tokenizer) {
            if t.pad_id() as usize >= model.config.vocab_size {
                return Err(ModelError::Input(format!(
                    "vocab.json: the blank (pad) token has id {} but the model has vocab_size {} outputs (config.json)",
                    t.pad_id(),
                    model.config.vocab_size
                ))
                .into());
            }
        }
        Ok(Pipeline { backend, model, tokenizer, preprocessor })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(backend: B, dir: &std::path::Path) -> Result<Self> {
        Self::new(backend, &ModelFiles::read_dir(dir)?)
    }

    /// Resamples to the model rate and normalizes as the feature extractor does.
    pub fn prepare(&self, audio: Audio) -> Result<Vec<f32>> {
        audio::validate(&audio.samples, "audio")?;
        let mut samples = audio::resample(&audio.samples, audio.sample_rate, self.preprocessor.sampling_rate)
            .map_err(audio::AudioError::with_model_rate_context)?;
        if self.preprocessor.do_normalize {
            audio::normalize(&mut samples);
        }
        Ok(samples)
    }

    /// One forward pass over prepared samples (batch of one).
    pub fn forward(&self, samples: &[f32], opts: Options) -> Result<Output<B::Tensor>> {
        let input = model::Input { samples, batch: 1, lengths: None };
        Ok(self.model.forward(&self.backend, &input, opts)?)
    }

    pub fn download(&self, t: &B::Tensor) -> Result<TensorData> {
        Ok(self.backend.download(t).map_err(ModelError::from)?)
    }

    /// CTC logits `[frames, vocab]` of prepared samples.
    pub fn logits(&self, samples: &[f32]) -> Result<TensorData> {
        if self.model.head != Head::Ctc {
            return Err(ModelError::NoHead("CTC (lm_head)").into());
        }
        let out = self.forward(samples, Options::default())?;
        let logits = out.logits.ok_or(ModelError::NoHead("CTC (lm_head)"))?;
        let mut t = self.download(&logits)?;
        t.shape.remove(0);
        Ok(t)
    }

    /// Seconds of audio per output frame.
    pub fn seconds_per_frame(&self) -> f32 {
        self.model.config.samples_per_frame() as f32 / self.preprocessor.sampling_rate as f32
    }

    /// The tokenizer, or why this model cannot transcribe (no CTC head, no
    /// vocab.json): a fault of the model, whatever audio is given.
    pub fn ctc_tokenizer(&self) -> Result<&CtcTokenizer> {
        if self.model.head != Head::Ctc {
            return Err(ModelError::NoHead("CTC (lm_head)").into());
        }
        Ok(self.tokenizer.as_ref().ok_or_else(|| ModelError::Input("the model directory has no vocab.json, so it cannot transcribe".into()))?)
    }

    pub fn transcribe(&self, audio: Audio) -> Result<Transcript> {
        let tokenizer = self.ctc_tokenizer()?;
        let samples = self.prepare(audio)?;
        let logits = self.logits(&samples)?;
        let vocab = logits.shape[1];
        let ids = CtcTokenizer::argmax(&logits.data, vocab);
        Ok(tokenizer.decode_with_words(&ids, self.seconds_per_frame()))
    }

    pub fn classify(&self, audio: Audio) -> Result<Classification> {
        if self.model.head != Head::Classifier {
            return Err(ModelError::NoHead("sequence classification").into());
        }
        let samples = self.prepare(audio)?;
        let out = self.forward(&samples, Options::default())?;
        let logits = self.download(&out.logits.ok_or(ModelError::NoHead("sequence classification"))?)?;
        let max = logits.data.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exps: Vec<f32> = logits.data.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let scores: Vec<(String, f32)> = exps.iter().enumerate().map(|(i, e)| (self.model.config.label(i), e / sum)).collect();
        let (best, _) = scores.iter().enumerate().fold((0, f32::MIN), |(bi, bs), (i, (_, s))| if *s > bs { (i, *s) } else { (bi, bs) });
        Ok(Classification { label: scores[best].0.clone(), score: scores[best].1, scores })
    }
}
