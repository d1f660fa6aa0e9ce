//! `SEWDEncoder`: positional conv + average-pool squeezing, the DeBERTa-v2
//! transformer with disentangled attention, and the upsampling back to the
//! frame rate.

use super::{Linear, ModelError, Norm};
use crate::backend::cpu::Cpu;
use crate::backend::{AttentionSpec, Backend, ConvSpec};
use crate::config::SewdConfig;
use crate::weights::{TensorData, WeightStore};

struct Layer<B: Backend> {
    /// query, key and value projections fused into one `[3·H·D, hidden]` GEMM.
    qkv: Linear<B>,
    /// Relative embeddings projected by this layer's position key/query
    /// weights. They depend on weights only, so they are computed at load.
    pos_key: Option<B::Tensor>,
    pos_query: Option<B::Tensor>,
    attn_out: Linear<B>,
    attn_norm: Norm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    output_norm: Norm<B>,
}

pub struct Encoder<B: Backend> {
    pos_conv_spec: ConvSpec,
    pos_conv: B::Tensor,
    pos_conv_bias: B::Tensor,
    layers: Vec<Layer<B>>,
    attention: AttentionSpec,
    upsample: Linear<B>,
}

pub struct EncoderOutput<T> {
    pub last_hidden_state: T,
    /// Inputs of every layer plus the final output, at the squeezed rate.
    pub hidden_states: Vec<T>,
    pub attentions: Vec<T>,
}

impl<B: Backend> Encoder<B> {
    pub fn load(backend: &B, cfg: &SewdConfig, w: &WeightStore) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        let k = cfg.num_conv_pos_embeddings;
        let groups = cfg.num_conv_pos_embedding_groups;
        let pos_conv_spec = ConvSpec {
            in_channels: h,
            out_channels: h,
            kernel: k,
            stride: cfg.squeeze_factor,
            padding: k / 2,
            groups,
            trim_end: usize::from(k.is_multiple_of(2)),
        };
        let pos_w = w.weight_normed_conv("encoder.pos_conv_embed.conv", &[h, h / groups, k])?;
        let pos_conv = backend.prepare_conv(&pos_w, &pos_conv_spec)?;
        let pos_conv_bias = super::vector(backend, w, "encoder.pos_conv_embed.conv.bias", h)?;

        let hd = cfg.num_attention_heads * cfg.attention_head_size;
        let attention = AttentionSpec {
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_size,
            c2p: cfg.c2p,
            p2c: cfg.p2c,
            span: cfg.att_span(),
            buckets: cfg.position_buckets,
            max_position: cfg.max_relative_positions,
            relative: cfg.relative_attention,
        };

        let rel = if cfg.relative_attention { Some(relative_embeddings(cfg, w)?) } else { None };
        // Grown as layers load, not sized from config.json, whose count may be absurd.
        let mut layers = Vec::new();
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.encoder.layer.{l}");
            let proj = |name: &str| -> Result<(TensorData, TensorData), ModelError> {
                let weight = w.get(&format!("{p}.attention.self.{name}.weight"), &[hd, h])?.clone();
                let bias = w.get(&format!("{p}.attention.self.{name}.bias"), &[hd])?.clone();
                Ok((weight, bias))
            };
            let (q, k, v) = (proj("query_proj")?, proj("key_proj")?, proj("value_proj")?);
            let qkv_w = TensorData { shape: vec![3 * hd, h], data: [&q.0.data[..], &k.0.data, &v.0.data].concat() };
            let qkv_b = TensorData { shape: vec![3 * hd], data: [&q.1.data[..], &k.1.data, &v.1.data].concat() };
            let qkv = Linear::from_data(backend, &qkv_w, Some(&qkv_b))?;

            let (mut pos_key, mut pos_query) = (None, None);
            if let Some(rel) = &rel {
                if cfg.c2p {
                    let src = if cfg.share_att_key { k.clone() } else { proj("pos_key_proj")? };
                    pos_key = Some(project(backend, rel, &src)?);
                }
                if cfg.p2c {
                    let src = if cfg.share_att_key { q.clone() } else { proj("pos_query_proj")? };
                    pos_query = Some(project(backend, rel, &src)?);
                }
            }
            layers.push(Layer {
                qkv,
                pos_key,
                pos_query,
                attn_out: Linear::load(backend, w, &format!("{p}.attention.output.dense"), hd, h, true)?,
                attn_norm: Norm::load(backend, w, &format!("{p}.attention.output.LayerNorm"), h, cfg.layer_norm_eps)?,
                intermediate: Linear::load(backend, w, &format!("{p}.intermediate.dense"), h, cfg.intermediate_size, true)?,
                output: Linear::load(backend, w, &format!("{p}.output.dense"), cfg.intermediate_size, h, true)?,
                output_norm: Norm::load(backend, w, &format!("{p}.output.LayerNorm"), h, cfg.layer_norm_eps)?,
            });
        }
        let upsample = Linear::load(backend, w, "encoder.upsample.projection", h, h * cfg.squeeze_factor, true)?;
        Ok(Encoder { pos_conv_spec, pos_conv, pos_conv_bias, layers, attention, upsample })
    }

    /// `x`: `[B, T, hidden]` features with padded frames already zeroed;
    /// `lengths`: valid squeezed frames per batch item.
    pub fn forward(
        &self,
        backend: &B,
        cfg: &SewdConfig,
        x: B::Tensor,
        lengths: &[usize],
        want_hidden: bool,
        want_attentions: bool,
    ) -> Result<EncoderOutput<B::Tensor>, ModelError> {
        let frames = backend.shape(&x)[1];
        let pos = backend.conv1d(&x, &self.pos_conv, Some(&self.pos_conv_bias), &self.pos_conv_spec)?;
        let pos = backend.activate(pos, cfg.feat_extract_activation)?;
        let mut h = backend.avg_pool_add(&x, cfg.squeeze_factor, &pos)?;
        drop(x);
        let squeezed = backend.shape(&h)[1];
        let lengths: Vec<usize> = lengths.iter().map(|&l| l.min(squeezed)).collect();

        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(backend, &h, None)?;
            let (context, probs) =
                backend.attention(&qkv, layer.pos_key.as_ref(), layer.pos_query.as_ref(), &lengths, &self.attention, want_attentions)?;
            drop(qkv);
            let a = layer.attn_out.forward(backend, &context, None)?;
            let a = layer.attn_norm.forward(backend, &a, Some(&h))?;
            let f = layer.intermediate.forward(backend, &a, Some(cfg.hidden_act))?;
            let f = layer.output.forward(backend, &f, None)?;
            let next = layer.output_norm.forward(backend, &f, Some(&a))?;
            if want_hidden {
                hidden_states.push(std::mem::replace(&mut h, next));
            } else {
                h = next;
            }
            attentions.extend(probs);
        }
        let up = self.upsample.forward(backend, &h, Some(cfg.feat_extract_activation))?;
        let last_hidden_state = backend.upsample(&up, cfg.squeeze_factor, frames)?;
        if want_hidden {
            hidden_states.push(h);
        }
        Ok(EncoderOutput { last_hidden_state, hidden_states, attentions })
    }
}

/// `rel_embeddings.weight[..2·span]`, layer-normed when `norm_rel_ebd` says so.
fn relative_embeddings(cfg: &SewdConfig, w: &WeightStore) -> Result<TensorData, ModelError> {
    let rows = 2 * cfg.att_span();
    let h = cfg.hidden_size;
    let name = "encoder.encoder.rel_embeddings.weight";
    let mut emb = w.get(name, &[rows, h])?.clone();
    if cfg.norm_rel_ebd {
        let cpu = Cpu;
        let norm = Norm::load(&cpu, w, "encoder.encoder.LayerNorm", h, cfg.layer_norm_eps)?;
        let t = cpu.upload(&emb.shape, &emb.data)?;
        emb = cpu.download(&norm.forward(&cpu, &t, None)?)?;
    }
    Ok(emb)
}

/// `rel @ W.T + b` on the host, uploaded to the backend.
fn project<B: Backend>(backend: &B, rel: &TensorData, (weight, bias): &(TensorData, TensorData)) -> Result<B::Tensor, ModelError> {
    let cpu = Cpu;
    let lin = Linear::from_data(&cpu, weight, Some(bias))?;
    let t = cpu.upload(&rel.shape, &rel.data)?;
    let out = cpu.download(&lin.forward(&cpu, &t, None)?)?;
    Ok(backend.upload(&out.shape, &out.data)?)
}
