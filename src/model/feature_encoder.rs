//! The conv feature encoder (`SEWDFeatureEncoder`), the feature layer norm and
//! projection (`SEWDModel.layer_norm` / `feature_projection`).

use super::{Linear, Norm, ModelError};
use crate::backend::{Backend, ConvSpec};
use crate::config::{FeatExtractNorm, SewdConfig};
use crate::weights::WeightStore;

struct ConvLayer<B: Backend> {
    spec: ConvSpec,
    weight: B::Tensor,
    bias: Option<B::Tensor>,
    norm: Option<Norm<B>>,
}

pub struct FeatureEncoder<B: Backend> {
    layers: Vec<ConvLayer<B>>,
    norm_kind: FeatExtractNorm,
    layer_norm: Norm<B>,
    projection: Option<Linear<B>>,
}

impl<B: Backend> FeatureEncoder<B> {
    pub fn load(backend: &B, cfg: &SewdConfig, w: &WeightStore) -> Result<Self, ModelError> {
        let mut layers = Vec::with_capacity(cfg.conv_dim.len());
        let mut cin = 1;
        for (i, ((&cout, &kernel), &stride)) in cfg.conv_dim.iter().zip(&cfg.conv_kernel).zip(&cfg.conv_stride).enumerate() {
            let spec = ConvSpec { in_channels: cin, out_channels: cout, kernel, stride, padding: 0, groups: 1, trim_end: 0 };
            let prefix = format!("feature_extractor.conv_layers.{i}");
            let weight = backend.prepare_conv(w.get(&format!("{prefix}.conv.weight"), &[cout, cin, kernel])?, &spec)?;
            let bias = if cfg.conv_bias { Some(super::vector(backend, w, &format!("{prefix}.conv.bias"), cout)?) } else { None };
            let has_norm = match cfg.feat_extract_norm {
                FeatExtractNorm::Group => i == 0,
                FeatExtractNorm::Layer => true,
            };
            let norm = if has_norm { Some(Norm::load(backend, w, &format!("{prefix}.layer_norm"), cout, 1e-5)?) } else { None };
            layers.push(ConvLayer { spec, weight, bias, norm });
            cin = cout;
        }
        let layer_norm = Norm::load(backend, w, "layer_norm", cin, cfg.feature_layer_norm_eps)?;
        let projection = if cin != cfg.hidden_size {
            Some(Linear::load(backend, w, "feature_projection", cin, cfg.hidden_size, true)?)
        } else {
            None
        };
        Ok(FeatureEncoder { layers, norm_kind: cfg.feat_extract_norm, layer_norm, projection })
    }

    /// `[B, samples, 1]` → `[B, frames, hidden]`.
    pub fn forward(&self, backend: &B, cfg: &SewdConfig, mut x: B::Tensor) -> Result<B::Tensor, ModelError> {
        for layer in &self.layers {
            x = backend.conv1d(&x, &layer.weight, layer.bias.as_ref(), &layer.spec)?;
            if let Some(n) = &layer.norm {
                x = match self.norm_kind {
                    FeatExtractNorm::Group => backend.group_norm_time(&x, &n.gamma, &n.beta, n.eps)?,
                    FeatExtractNorm::Layer => backend.layer_norm(&x, None, &n.gamma, &n.beta, n.eps)?,
                };
            }
            x = backend.activate(x, cfg.feat_extract_activation)?;
        }
        x = self.layer_norm.forward(backend, &x, None)?;
        if let Some(p) = &self.projection {
            x = p.forward(backend, &x, None)?;
        }
        Ok(x)
    }
}
