//! The SEW-D graph, written once against [`Backend`].
//!
//! `SewdModel` = feature encoder → encoder (squeeze, DeBERTa-v2 layers,
//! upsample) → optional head (CTC `lm_head` or the sequence classifier).

mod encoder;
mod feature_encoder;
pub mod loss;

use thiserror::Error;

use crate::backend::{Backend, BackendError};
use crate::config::{Activation, SewdConfig};
use crate::weights::{TensorData, WeightStore, WeightsError};
use encoder::Encoder;
use feature_encoder::FeatureEncoder;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("input: {0}")]
    Input(String),
    #[error("this model has no {0} head")]
    NoHead(&'static str),
}

/// Which head sits on the base model, as the checkpoint's tensors say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `SEWDModel`: no head.
    Base,
    /// `SEWDForCTC`: `lm_head`.
    Ctc,
    /// `SEWDForSequenceClassification`: `projector` + `classifier`.
    Classifier,
}

impl Head {
    pub fn detect(w: &WeightStore) -> Head {
        if w.contains("lm_head.weight") {
            Head::Ctc
        } else if w.contains("classifier.weight") {
            Head::Classifier
        } else {
            Head::Base
        }
    }
}

pub(crate) struct Linear<B: Backend> {
    weight: B::Tensor,
    bias: Option<B::Tensor>,
}

impl<B: Backend> Linear<B> {
    fn load(backend: &B, w: &WeightStore, prefix: &str, input: usize, output: usize, bias: bool) -> Result<Self, ModelError> {
        let weight = w.get(&format!("{prefix}.weight"), &[output, input])?;
        let bias = if bias { Some(w.get(&format!("{prefix}.bias"), &[output])?) } else { None };
        Self::from_data(backend, weight, bias)
    }

    fn from_data(backend: &B, weight: &TensorData, bias: Option<&TensorData>) -> Result<Self, ModelError> {
        Ok(Linear {
            weight: backend.prepare_linear(weight)?,
            bias: bias.map(|b| backend.upload(&b.shape, &b.data)).transpose()?,
        })
    }

    fn forward(&self, backend: &B, x: &B::Tensor, act: Option<Activation>) -> Result<B::Tensor, ModelError> {
        Ok(backend.linear(x, &self.weight, self.bias.as_ref(), act)?)
    }
}

pub(crate) struct Norm<B: Backend> {
    gamma: B::Tensor,
    beta: B::Tensor,
    eps: f32,
}

impl<B: Backend> Norm<B> {
    fn load(backend: &B, w: &WeightStore, prefix: &str, width: usize, eps: f32) -> Result<Self, ModelError> {
        Ok(Norm {
            gamma: vector(backend, w, &format!("{prefix}.weight"), width)?,
            beta: vector(backend, w, &format!("{prefix}.bias"), width)?,
            eps,
        })
    }

    /// LayerNorm of `x + residual`.
    fn forward(&self, backend: &B, x: &B::Tensor, residual: Option<&B::Tensor>) -> Result<B::Tensor, ModelError> {
        Ok(backend.layer_norm(x, residual, &self.gamma, &self.beta, self.eps)?)
    }
}

fn vector<B: Backend>(backend: &B, w: &WeightStore, name: &str, len: usize) -> Result<B::Tensor, ModelError> {
    let t = w.get(name, &[len])?;
    Ok(backend.upload(&t.shape, &t.data)?)
}

struct Classifier<B: Backend> {
    /// softmax of `layer_weights`, when `use_weighted_layer_sum`.
    layer_weights: Option<Vec<f32>>,
    projector: Linear<B>,
    classifier: Linear<B>,
}

/// A batch of waveforms, already normalized, right-padded with zeros to one length.
pub struct Input<'a> {
    /// `[batch, samples]` row-major.
    pub samples: &'a [f32],
    pub batch: usize,
    /// Valid samples per item, as transformers' `attention_mask.sum(-1)`;
    /// `None` is "no attention mask".
    pub lengths: Option<&'a [usize]>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub output_hidden_states: bool,
    pub output_attentions: bool,
}

/// What a forward pass returns, as backend tensors.
pub struct Output<T> {
    /// `[B, frames, hidden]`.
    pub last_hidden_state: T,
    /// CTC: `[B, frames, vocab]`; classifier: `[B, num_labels]`.
    pub logits: Option<T>,
    /// `num_hidden_layers + 1` tensors `[B, frames / squeeze, hidden]`.
    pub hidden_states: Vec<T>,
    /// `num_hidden_layers` tensors `[B, heads, T', T']`.
    pub attentions: Vec<T>,
    /// Valid output frames per batch item (the CTC input lengths).
    pub frame_lengths: Vec<usize>,
}

pub struct SewdModel<B: Backend> {
    pub config: SewdConfig,
    pub head: Head,
    features: FeatureEncoder<B>,
    encoder: Encoder<B>,
    lm_head: Option<Linear<B>>,
    classifier: Option<Classifier<B>>,
}

impl<B: Backend> SewdModel<B> {
    /// Builds the model from checkpoint tensors; the head is detected from them.
    pub fn load(backend: &B, config: SewdConfig, w: &WeightStore) -> Result<Self, ModelError> {
        let dequantized;
        let w = match &config.quantization {
            Some(q) => {
                dequantized = w.dequantized(q)?;
                &dequantized
            }
            None => {
                w.check_unquantized()?;
                w
            }
        };
        let head = Head::detect(w);
        let features = FeatureEncoder::load(backend, &config, w)?;
        let encoder = Encoder::load(backend, &config, w)?;
        let h = config.hidden_size;
        let lm_head = match head {
            Head::Ctc => Some(Linear::load(backend, w, "lm_head", h, config.vocab_size, true)?),
            _ => None,
        };
        let classifier = match head {
            Head::Classifier => {
                let layer_weights = if config.use_weighted_layer_sum {
                    let n = config.num_hidden_layers + 1;
                    let raw = &w.get("layer_weights", &[n])?.data;
                    let max = raw.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let exps: Vec<f32> = raw.iter().map(|v| (v - max).exp()).collect();
                    let sum: f32 = exps.iter().sum();
                    Some(exps.iter().map(|e| e / sum).collect())
                } else {
                    None
                };
                let p = config.classifier_proj_size;
                Some(Classifier {
                    layer_weights,
                    projector: Linear::load(backend, w, "projector", h, p, true)?,
                    classifier: Linear::load(backend, w, "classifier", p, config.num_labels, true)?,
                })
            }
            _ => None,
        };
        Ok(SewdModel { config, head, features, encoder, lm_head, classifier })
    }

    /// The forward pass of `SEWDModel` / `SEWDForCTC` / `SEWDForSequenceClassification` in eval mode.
    pub fn forward(&self, backend: &B, input: &Input, opts: Options) -> Result<Output<B::Tensor>, ModelError> {
        let cfg = &self.config;
        let batch = input.batch;
        if batch == 0 || !input.samples.len().is_multiple_of(batch) {
            return Err(ModelError::Input(format!("{} samples do not split into a batch of {batch}", input.samples.len())));
        }
        let len = input.samples.len() / batch;
        if let Some(l) = input.lengths {
            if l.len() != batch || l.iter().any(|&n| n > len) {
                return Err(ModelError::Input(format!("attention mask lengths {l:?} do not fit a batch of {batch} × {len} samples")));
            }
        }
        let min = cfg.min_samples();
        let shortest = input.lengths.map_or(len, |l| l.iter().copied().min().unwrap_or(0));
        if shortest < min {
            return Err(ModelError::Input(format!(
                "audio of {shortest} samples is too short: this model needs at least {min} samples ({} ms at 16 kHz)",
                min as u64 * 1000 / 16_000
            )));
        }
        if let Some(i) = input.samples.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!("sample {} of item {} is not a finite number", i % len, i / len)));
        }

        let x = backend.upload(&[batch, len, 1], input.samples)?;
        let mut x = self.features.forward(backend, cfg, x)?;
        let frames = backend.shape(&x)[1];
        let squeezed = frames / cfg.squeeze_factor;
        let feature_lengths: Vec<usize> = match input.lengths {
            Some(l) => l.iter().map(|&n| cfg.feature_frames(n).min(frames)).collect(),
            None => vec![frames; batch],
        };
        // transformers max-pools the frame mask over each squeeze window.
        let squeezed_lengths: Vec<usize> = match input.lengths {
            Some(_) => {
                x = backend.mask_frames(x, &feature_lengths)?;
                feature_lengths.iter().map(|&n| n.div_ceil(cfg.squeeze_factor).min(squeezed)).collect()
            }
            None => vec![squeezed; batch],
        };
        let want_hidden = opts.output_hidden_states || self.classifier.as_ref().is_some_and(|c| c.layer_weights.is_some());
        let enc = self.encoder.forward(backend, cfg, x, &squeezed_lengths, want_hidden, opts.output_attentions)?;

        let logits = match (&self.lm_head, &self.classifier) {
            (Some(lm), _) => Some(lm.forward(backend, &enc.last_hidden_state, None)?),
            (_, Some(c)) => Some(self.classify(backend, c, &enc, input.lengths.map(|_| &feature_lengths[..]))?),
            _ => None,
        };
        Ok(Output {
            last_hidden_state: enc.last_hidden_state,
            logits,
            hidden_states: if opts.output_hidden_states { enc.hidden_states } else { Vec::new() },
            attentions: enc.attentions,
            frame_lengths: feature_lengths,
        })
    }

    /// Projection, (masked) mean pooling over time, classifier.
    fn classify(
        &self,
        backend: &B,
        c: &Classifier<B>,
        enc: &encoder::EncoderOutput<B::Tensor>,
        feature_lengths: Option<&[usize]>,
    ) -> Result<B::Tensor, ModelError> {
        let summed;
        let states = match &c.layer_weights {
            // The weighted sum runs over the squeezed-rate hidden states, as in transformers.
            Some(weights) => {
                let refs: Vec<&B::Tensor> = enc.hidden_states.iter().collect();
                summed = backend.weighted_sum(&refs, weights)?;
                &summed
            }
            None => &enc.last_hidden_state,
        };
        let projected = c.projector.forward(backend, states, None)?;
        let len = backend.shape(&projected)[1];
        let lengths: Vec<usize> = match feature_lengths {
            Some(l) => l.iter().map(|&n| n.min(len)).collect(),
            None => vec![len; backend.shape(&projected)[0]],
        };
        let pooled = backend.masked_mean(&projected, &lengths)?;
        c.classifier.forward(backend, &pooled, None)
    }
}
