//! `config.json` (SEWDConfig) and `preprocessor_config.json` (Wav2Vec2FeatureExtractor).
//!
//! Defaults are those of transformers 5.x `SEWDConfig`. Keys that inference does
//! not use are ignored; keys that would change the result and are not supported
//! are rejected, naming the field.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::weights::WeightQuantization;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{source_name}: not valid JSON: {message}")]
    Json { source_name: String, message: String },
    #[error("{source_name}: field `{field}`: {message}")]
    Field { source_name: String, field: String, message: String },
}

/// Elementwise activation functions of transformers' `ACT2FN` that SEW-D configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact erf GELU (`gelu`, `gelu_python`).
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    Selu,
    Tanh,
    /// `swish` / `silu`.
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" | "gelu_python" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_python_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "selu" => Activation::Selu,
            "tanh" => Activation::Tanh,
            "swish" | "silu" => Activation::Silu,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatExtractNorm {
    /// GroupNorm (one group per channel) after the first conv only.
    Group,
    /// LayerNorm over channels after every conv.
    Layer,
}

/// The validated model configuration.
#[derive(Debug, Clone)]
pub struct SewdConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub attention_head_size: usize,
    pub intermediate_size: usize,
    pub squeeze_factor: usize,
    pub max_position_embeddings: usize,
    /// `max_relative_positions` as the encoder resolves it (falls back to max_position_embeddings).
    pub max_relative_positions: usize,
    /// `position_buckets`; values <= 0 mean no log bucketing.
    pub position_buckets: i64,
    pub share_att_key: bool,
    pub relative_attention: bool,
    pub c2p: bool,
    pub p2c: bool,
    pub norm_rel_ebd: bool,
    pub hidden_act: Activation,
    pub layer_norm_eps: f32,
    pub feature_layer_norm_eps: f32,
    pub feat_extract_norm: FeatExtractNorm,
    pub feat_extract_activation: Activation,
    pub conv_dim: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_bias: bool,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    pub use_weighted_layer_sum: bool,
    pub classifier_proj_size: usize,
    pub num_labels: usize,
    pub id2label: BTreeMap<usize, String>,
    pub pad_token_id: Option<u32>,
    pub architectures: Vec<String>,
    pub ctc_loss_reduction: String,
    pub ctc_zero_infinity: bool,
    /// `quantization_config`: integer weights to dequantize on load.
    pub quantization: Option<WeightQuantization>,
}

/// The largest size, count or position a config field may hold: far above
/// any real checkpoint, and small enough that products of a few of them fit
/// wasm32's 32-bit `usize`.
const MAX_DIM: usize = 1 << 24;
/// The largest samples per frame, and shortest input, of the conv encoder.
const MAX_ENCODER_SAMPLES: u64 = 1 << 30;

/// (samples per frame, minimum input samples) of the conv encoder in u64,
/// `None` on overflow: the checked twin of `samples_per_frame`/`min_samples`.
fn encoder_geometry(kernel: &[usize], stride: &[usize], squeeze: usize) -> Option<(u64, u64)> {
    let per_frame = stride.iter().try_fold(1u64, |a, &s| a.checked_mul(s as u64))?;
    let mut min = squeeze.max(1) as u64;
    for (&k, &s) in kernel.iter().zip(stride).rev() {
        min = (min - 1).checked_mul(s as u64)?.checked_add(k as u64)?;
    }
    Some((per_frame, min))
}

impl SewdConfig {
    /// Size of the relative embedding span (`pos_ebd_size` in transformers).
    pub fn att_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets as usize
        } else {
            self.max_relative_positions
        }
    }

    /// Samples per output frame of the conv feature encoder.
    pub fn samples_per_frame(&self) -> usize {
        self.conv_stride.iter().product()
    }

    /// Output length of the conv feature encoder for `samples` input samples (0 if too short).
    pub fn feature_frames(&self, samples: usize) -> usize {
        let mut len = samples;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if len < k {
                return 0;
            }
            len = (len - k) / s + 1;
        }
        len
    }

    /// The smallest number of samples that yields `frames` encoder frames... inverse of
    /// [`Self::feature_frames`] for the minimum input a forward pass accepts.
    pub fn min_samples(&self) -> usize {
        // Need at least squeeze_factor frames so the squeezed sequence is not empty.
        let mut len = self.squeeze_factor.max(1);
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride).rev() {
            len = (len - 1) * s + k;
        }
        len
    }

    pub fn label(&self, id: usize) -> String {
        self.id2label.get(&id).cloned().unwrap_or_else(|| format!("LABEL_{id}"))
    }

    pub fn from_json(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        Parser { source_name, obj: &value }.parse()
    }
}

struct Parser<'a> {
    source_name: &'a str,
    obj: &'a Value,
}

impl Parser<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            source_name: self.source_name.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn raw(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn int(&self, field: &str, default: i64) -> Result<i64, ConfigError> {
        match self.raw(field) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| self.err(field, format!("expected an integer, found {v}"))),
        }
    }

    fn positive(&self, field: &str, default: i64) -> Result<usize, ConfigError> {
        let v = self.int(field, default)?;
        if v <= 0 || v > MAX_DIM as i64 {
            return Err(self.err(field, format!("must be a positive integer of at most {MAX_DIM} (got {v})")));
        }
        Ok(v as usize)
    }

    fn float(&self, field: &str, default: f64) -> Result<f64, ConfigError> {
        match self.raw(field) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(field, format!("expected a number, found {v}"))),
        }
    }

    /// A normalization epsilon: zero or less would divide by zero (or take the
    /// root of a negative number) on a silent stretch, so it is refused here.
    fn epsilon(&self, field: &str, default: f64) -> Result<f32, ConfigError> {
        let v = self.float(field, default)?;
        let eps = v as f32;
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(self.err(field, format!("must be a positive number (got {v})")));
        }
        Ok(eps)
    }

    fn boolean(&self, field: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(field) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(field, format!("expected true or false, found {v}"))),
        }
    }

    fn string(&self, field: &str, default: &str) -> Result<String, ConfigError> {
        match self.raw(field) {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.err(field, format!("expected a string, found {v}"))),
        }
    }

    fn int_list(&self, field: &str, default: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let Some(v) = self.raw(field) else { return Ok(default.to_vec()) };
        let arr = v.as_array().ok_or_else(|| self.err(field, format!("expected a list of integers, found {v}")))?;
        arr.iter()
            .map(|x| match x.as_i64() {
                Some(n) if n > 0 && n < 1 << 20 => Ok(n as usize),
                _ => Err(self.err(field, format!("every entry must be a positive integer (found {x})"))),
            })
            .collect()
    }

    fn activation(&self, field: &str, default: &str) -> Result<Activation, ConfigError> {
        let name = self.string(field, default)?;
        Activation::parse(&name).ok_or_else(|| {
            self.err(
                field,
                format!("unknown activation {name:?} (supported: gelu, gelu_python, gelu_new, relu, selu, tanh, swish, silu)"),
            )
        })
    }

    fn parse(&self) -> Result<SewdConfig, ConfigError> {
        if !self.obj.is_object() {
            return Err(ConfigError::Json {
                source_name: self.source_name.to_string(),
                message: "expected a JSON object".into(),
            });
        }
        if let Some(model_type) = self.raw("model_type").and_then(Value::as_str) {
            if model_type != "sew-d" {
                return Err(self.err("model_type", format!("{model_type:?} is not a SEW-D model (expected \"sew-d\")")));
            }
        }
        let hidden_size = self.positive("hidden_size", 768)?;
        let num_attention_heads = self.positive("num_attention_heads", 12)?;
        if hidden_size % num_attention_heads != 0 && self.raw("attention_head_size").is_none() {
            return Err(self.err(
                "num_attention_heads",
                format!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"),
            ));
        }
        let attention_head_size = self.positive("attention_head_size", (hidden_size / num_attention_heads) as i64)?;

        let conv_dim = self.int_list("conv_dim", &[64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512])?;
        let conv_stride = self.int_list("conv_stride", &[5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1])?;
        let conv_kernel = self.int_list("conv_kernel", &[10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1])?;
        if conv_dim.is_empty() {
            return Err(self.err("conv_dim", "must list at least one conv layer"));
        }
        if conv_stride.len() != conv_dim.len() || conv_kernel.len() != conv_dim.len() {
            return Err(self.err(
                "conv_dim",
                format!(
                    "conv_dim, conv_stride and conv_kernel must have the same length (got {}, {}, {})",
                    conv_dim.len(),
                    conv_stride.len(),
                    conv_kernel.len()
                ),
            ));
        }

        let feat_extract_norm = match self.string("feat_extract_norm", "group")?.as_str() {
            "group" => FeatExtractNorm::Group,
            "layer" => FeatExtractNorm::Layer,
            other => return Err(self.err("feat_extract_norm", format!("{other:?} is not \"group\" or \"layer\""))),
        };

        let (c2p, p2c) = self.pos_att_type()?;
        let norm_rel_ebd = {
            let s = self.string("norm_rel_ebd", "layer_norm")?.to_lowercase();
            let parts: Vec<&str> = s.split('|').map(str::trim).collect();
            if let Some(bad) = parts.iter().find(|p| !matches!(**p, "layer_norm" | "none" | "")) {
                return Err(self.err("norm_rel_ebd", format!("unsupported value {bad:?} (expected \"layer_norm\" or \"none\")")));
            }
            parts.contains(&"layer_norm")
        };

        let max_position_embeddings = self.positive("max_position_embeddings", 512)?;
        let max_rel = self.int("max_relative_positions", -1)?;
        let max_relative_positions = if max_rel < 1 { max_position_embeddings } else { self.positive("max_relative_positions", -1)? };
        let position_buckets = self.int("position_buckets", 256)?;
        if position_buckets > 0 && position_buckets < 2 {
            return Err(self.err("position_buckets", "must be at least 2 when bucketing is on"));
        }
        if position_buckets > MAX_DIM as i64 {
            return Err(self.err("position_buckets", format!("{position_buckets} is over the limit of {MAX_DIM}")));
        }
        if position_buckets > 0 && max_relative_positions < 2 {
            return Err(self.err("max_position_embeddings", "must be at least 2 when position_buckets is set"));
        }
        // The log buckets divide by ln((max_relative_positions - 1) / (position_buckets / 2)),
        // in float32 as transformers does: a ratio of 1 makes every far offset infinite.
        if position_buckets > 0 && ((max_relative_positions as f64 - 1.0) / (position_buckets / 2) as f64) as f32 == 1.0 {
            return Err(self.err(
                "position_buckets",
                format!("{position_buckets} with max_relative_positions {max_relative_positions}: (max_relative_positions - 1) / (position_buckets / 2) is 1, so the log buckets divide by ln 1 = 0"),
            ));
        }

        if self.int("conv_kernel_size", 0)? > 0 {
            return Err(self.err("conv_kernel_size", "the DeBERTa encoder conv layer is not supported by SEW-D"));
        }
        if self.boolean("add_adapter", false)? {
            return Err(self.err("add_adapter", "adapter layers are not supported"));
        }

        let squeeze_factor = self.positive("squeeze_factor", 2)?;
        match encoder_geometry(&conv_kernel, &conv_stride, squeeze_factor) {
            Some((per_frame, min)) if per_frame <= MAX_ENCODER_SAMPLES && min <= MAX_ENCODER_SAMPLES => {}
            _ => {
                return Err(self.err(
                    "conv_stride",
                    format!("with conv_kernel {conv_kernel:?} and squeeze_factor {squeeze_factor}, the feature encoder needs over {MAX_ENCODER_SAMPLES} samples per frame or per input"),
                ))
            }
        }
        let num_conv_pos_embeddings = self.positive("num_conv_pos_embeddings", 128)?;
        let groups = self.positive("num_conv_pos_embedding_groups", 16)?;
        if hidden_size % groups != 0 {
            return Err(self.err(
                "num_conv_pos_embedding_groups",
                format!("hidden_size {hidden_size} is not divisible by {groups} groups"),
            ));
        }

        let id2label = self.id2label()?;
        let num_labels = match self.raw("num_labels") {
            Some(_) => self.positive("num_labels", 2)?,
            None if !id2label.is_empty() => id2label.len(),
            None => 2,
        };
        let architectures = match self.raw("architectures") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .ok_or_else(|| self.err("architectures", "expected a list of class names"))?,
        };
        let pad_token_id = match self.raw("pad_token_id") {
            None => if self.obj.get("pad_token_id").is_some() { None } else { Some(0) },
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| self.err("pad_token_id", format!("expected an integer id below 2^32, found {v}")))?,
            ),
        };
        let ctc_loss_reduction = self.string("ctc_loss_reduction", "mean")?;
        if !matches!(ctc_loss_reduction.as_str(), "mean" | "sum" | "none") {
            return Err(self.err("ctc_loss_reduction", format!("{ctc_loss_reduction:?} is not mean, sum or none")));
        }

        let quantization = match self.raw("quantization_config") {
            None => None,
            Some(v) => Some(WeightQuantization::parse(v).map_err(|(field, message)| self.err(&field, message))?),
        };

        Ok(SewdConfig {
            vocab_size: self.positive("vocab_size", 32)?,
            hidden_size,
            num_hidden_layers: self.positive("num_hidden_layers", 12)?,
            num_attention_heads,
            attention_head_size,
            intermediate_size: self.positive("intermediate_size", 3072)?,
            squeeze_factor,
            max_position_embeddings,
            max_relative_positions,
            position_buckets,
            share_att_key: self.boolean("share_att_key", true)?,
            relative_attention: self.boolean("relative_attention", true)?,
            c2p,
            p2c,
            norm_rel_ebd,
            hidden_act: self.activation("hidden_act", "gelu_python")?,
            layer_norm_eps: self.epsilon("layer_norm_eps", 1e-7)?,
            feature_layer_norm_eps: self.epsilon("feature_layer_norm_eps", 1e-5)?,
            feat_extract_norm,
            feat_extract_activation: self.activation("feat_extract_activation", "gelu")?,
            conv_dim,
            conv_stride,
            conv_kernel,
            conv_bias: self.boolean("conv_bias", false)?,
            num_conv_pos_embeddings,
            num_conv_pos_embedding_groups: groups,
            use_weighted_layer_sum: self.boolean("use_weighted_layer_sum", false)?,
            classifier_proj_size: self.positive("classifier_proj_size", 256)?,
            num_labels,
            id2label,
            pad_token_id,
            architectures,
            ctc_loss_reduction,
            ctc_zero_infinity: self.boolean("ctc_zero_infinity", false)?,
            quantization,
        })
    }

    /// `pos_att_type` is a list (`["p2c", "c2p"]`) or a DeBERTa-style string (`"p2c|c2p"`).
    fn pos_att_type(&self) -> Result<(bool, bool), ConfigError> {
        let items: Vec<String> = match self.raw("pos_att_type") {
            None => vec!["p2c".into(), "c2p".into()],
            Some(Value::String(s)) => s.to_lowercase().split('|').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(|s| s.to_lowercase()).ok_or_else(|| self.err("pos_att_type", format!("expected strings, found {x}"))))
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(self.err("pos_att_type", format!("expected a list such as [\"p2c\", \"c2p\"], found {v}"))),
        };
        if let Some(bad) = items.iter().find(|x| !matches!(x.as_str(), "c2p" | "p2c")) {
            return Err(self.err("pos_att_type", format!("unsupported attention type {bad:?} (only \"c2p\" and \"p2c\")")));
        }
        Ok((items.iter().any(|x| x == "c2p"), items.iter().any(|x| x == "p2c")))
    }

    fn id2label(&self) -> Result<BTreeMap<usize, String>, ConfigError> {
        let Some(v) = self.raw("id2label") else { return Ok(BTreeMap::new()) };
        let map = v.as_object().ok_or_else(|| self.err("id2label", "expected an object {\"0\": \"label\", ...}"))?;
        map.iter()
            .map(|(k, label)| {
                let id = k.parse::<usize>().map_err(|_| self.err("id2label", format!("key {k:?} is not an integer")))?;
                let label = label.as_str().ok_or_else(|| self.err("id2label", format!("label for {k} is not a string")))?;
                Ok((id, label.to_string()))
            })
            .collect()
    }
}

/// `preprocessor_config.json` of a Wav2Vec2FeatureExtractor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PreprocessorConfig {
    pub do_normalize: bool,
    pub sampling_rate: u32,
    pub return_attention_mask: bool,
    pub padding_value: f32,
}

impl Default for PreprocessorConfig {
    fn default() -> Self {
        PreprocessorConfig { do_normalize: true, sampling_rate: 16_000, return_attention_mask: true, padding_value: 0.0 }
    }
}

impl PreprocessorConfig {
    pub fn from_json(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let cfg: PreprocessorConfig = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        if cfg.sampling_rate == 0 {
            return Err(ConfigError::Field {
                source_name: source_name.to_string(),
                field: "sampling_rate".into(),
                message: "must be positive".into(),
            });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SewdConfig, ConfigError> {
        SewdConfig::from_json(json, "config.json")
    }

    #[test]
    fn defaults_match_transformers() {
        let c = parse("{}").unwrap();
        assert_eq!(c.hidden_size, 768);
        assert_eq!(c.conv_dim.len(), 13);
        assert_eq!(c.samples_per_frame(), 320);
        assert_eq!(c.hidden_act, Activation::Gelu);
        assert!((c.layer_norm_eps - 1e-7).abs() < 1e-12);
        assert!(c.c2p && c.p2c && c.share_att_key && c.norm_rel_ebd);
        assert_eq!(c.att_span(), 256);
        assert_eq!(c.pad_token_id, Some(0));
    }

    #[test]
    fn inconsistent_values_name_the_field() {
        let e = parse(r#"{"conv_dim":[1,2],"conv_stride":[1],"conv_kernel":[1,2]}"#).unwrap_err().to_string();
        assert!(e.contains("conv_dim") && e.contains("same length"), "{e}");
        let e = parse(r#"{"hidden_size":100,"num_attention_heads":3}"#).unwrap_err().to_string();
        assert!(e.contains("num_attention_heads"), "{e}");
        let e = parse(r#"{"hidden_act":"swiglu"}"#).unwrap_err().to_string();
        assert!(e.contains("hidden_act") && e.contains("swiglu"), "{e}");
        let e = parse(r#"{"feat_extract_norm":"batch"}"#).unwrap_err().to_string();
        assert!(e.contains("feat_extract_norm"), "{e}");
        let e = parse(r#"{"pos_att_type":["p2p"]}"#).unwrap_err().to_string();
        assert!(e.contains("pos_att_type"), "{e}");
        let e = parse("[1]").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        for bad in ["-1e-5", "0", "1e-50"] {
            let e = parse(&format!(r#"{{"layer_norm_eps":{bad}}}"#)).unwrap_err().to_string();
            assert!(e.contains("layer_norm_eps") && e.contains("positive"), "{e}");
        }
        let e = parse(r#"{"feature_layer_norm_eps":-0.5}"#).unwrap_err().to_string();
        assert!(e.contains("feature_layer_norm_eps"), "{e}");
    }

    /// Values whose products would overflow (wasm32's usize is 32 bits) or
    /// whose log buckets divide by zero are refused by name.
    #[test]
    fn sizes_that_would_overflow_name_the_field() {
        for (json, field) in [
            (r#"{"position_buckets":2147483904}"#, "position_buckets"),
            (r#"{"position_buckets":-1,"max_relative_positions":2147483904}"#, "max_relative_positions"),
            (r#"{"position_buckets":256,"max_relative_positions":129}"#, "position_buckets"),
            (r#"{"conv_dim":[1,1,1,1],"conv_kernel":[1,1,1,1],"conv_stride":[65536,65536,65536,65536]}"#, "conv_stride"),
            (r#"{"conv_dim":[1,1],"conv_kernel":[1000000,1000000],"conv_stride":[1000,1000],"squeeze_factor":1000}"#, "conv_stride"),
            (r#"{"num_hidden_layers":16777217}"#, "num_hidden_layers"),
            (r#"{"pad_token_id":4294967296}"#, "pad_token_id"),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        // Far offsets near a degenerate base still index inside the table.
        assert_eq!(crate::backend::relative::embedding_index(1 << 40, 256, 129, 256), 511);
        // The real geometries still parse.
        let c = parse(r#"{"position_buckets":256,"max_position_embeddings":512}"#).unwrap();
        assert_eq!(c.att_span(), 256);
    }

    #[test]
    fn pos_att_type_forms_and_unknown_keys() {
        let c = parse(r#"{"pos_att_type":"p2c|c2p","layerdrop":0.1,"position_biased_input":false}"#).unwrap();
        assert!(c.c2p && c.p2c);
        let c = parse(r#"{"pos_att_type":["c2p"]}"#).unwrap();
        assert!(c.c2p && !c.p2c);
        let c = parse(r#"{"id2label":{"0":"yes","1":"no"}}"#).unwrap();
        assert_eq!(c.num_labels, 2);
        assert_eq!(c.label(1), "no");
    }

    /// The shape of asapp/sew-d-tiny-100k-ft-ls100h's config.json (saved by transformers 4.x),
    /// with the keys inference ignores (dropouts, SpecAugment, layerdrop, ...).
    #[test]
    fn asapp_style_config_loads() {
        let c = parse(r#"{
            "_name_or_path": "asapp/sew-d-tiny-100k", "activation_dropout": 0.0, "apply_spec_augment": true,
            "architectures": ["SEWDForCTC"], "attention_dropout": 0.1, "bos_token_id": 1,
            "classifier_proj_size": 256, "conv_bias": false,
            "conv_dim": [64,128,128,128,128,256,256,256,256,512,512,512,512],
            "conv_kernel": [10,3,1,3,1,3,1,3,1,2,1,2,1], "conv_stride": [5,2,1,2,1,2,1,2,1,2,1,2,1],
            "ctc_loss_reduction": "sum", "ctc_zero_infinity": false, "eos_token_id": 2,
            "feat_extract_activation": "gelu", "feat_extract_norm": "group", "feat_proj_dropout": 0.0,
            "feature_layer_norm_eps": 1e-05, "final_dropout": 0.0, "hidden_act": "gelu_python",
            "hidden_dropout": 0.0, "hidden_size": 384, "initializer_range": 0.02, "intermediate_size": 1536,
            "layer_norm_eps": 1e-07, "layerdrop": 0.0, "mask_feature_length": 10, "mask_feature_prob": 0.0,
            "mask_time_length": 10, "mask_time_prob": 0.05, "max_position_embeddings": 512,
            "model_type": "sew-d", "norm_rel_ebd": "layer_norm", "num_attention_heads": 6,
            "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 31, "num_feat_extract_layers": 13,
            "num_hidden_layers": 12, "pad_token_id": 0, "pos_att_type": ["p2c", "c2p"], "position_biased_input": false,
            "position_buckets": 256, "relative_attention": true, "share_att_key": true, "squeeze_factor": 2,
            "torch_dtype": "float32", "transformers_version": "4.12.0.dev0", "use_weighted_layer_sum": false,
            "vocab_size": 32
        }"#).unwrap();
        assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.attention_head_size), (384, 12, 6, 64));
        assert_eq!(c.ctc_loss_reduction, "sum");
        assert_eq!(c.num_conv_pos_embeddings, 31);
        assert_eq!(c.architectures, vec!["SEWDForCTC".to_string()]);
        let e = parse(r#"{"model_type": "wav2vec2"}"#).unwrap_err().to_string();
        assert!(e.contains("model_type"), "{e}");
    }

    #[test]
    fn frame_counts() {
        let c = parse("{}").unwrap();
        assert_eq!(c.feature_frames(16_000), 49);
        assert_eq!(c.feature_frames(300), 0);
        let m = c.min_samples();
        assert!(c.feature_frames(m) >= c.squeeze_factor);
        assert!(c.feature_frames(m - 1) < c.squeeze_factor);
    }
}
