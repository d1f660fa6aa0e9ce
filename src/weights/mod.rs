//! Checkpoint tensors: `model.safetensors` and the legacy `pytorch_model.bin`.
//!
//! Both formats are parsed here without outside help: [`safetensors`] reads the
//! JSON header and byte ranges, [`pytorch`] opens the `torch.save` zip archive
//! and runs a small pickle machine ([`pickle`]) over its `data.pkl`. Every
//! tensor is converted to row-major `f32` on load. Names are kept as stored;
//! [`WeightStore::get`] also tries them with the `sew_d.` prefix added or
//! removed, so one model can read both `SEWDModel` and `SEWDForCTC` checkpoints.
//! Integer-quantized weights (compressed-tensors) are turned back into f32 by
//! [`WeightStore::dequantized`] ([`quantized`]).
//!
//! Input is untrusted: sizes, offsets and strides are checked against the file
//! before anything is read or allocated, and every failure is an error that
//! names the file (and the tensor, where one is at fault), never a panic.

mod dtype;
mod names;
mod pickle;
mod pytorch;
mod quantized;
mod safetensors;

pub use quantized::WeightQuantization;

use std::collections::HashMap;
use thiserror::Error;

/// File names [`WeightStore::load_dir`] looks for, in order.
pub const SAFETENSORS_FILE: &str = "model.safetensors";
pub const PYTORCH_FILE: &str = "pytorch_model.bin";

#[derive(Debug, Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A model directory holds no checkpoint.
    #[error("no weights in {dir}: neither {safetensors} nor {pytorch} exists there")]
    NoCheckpoint {
        dir: String,
        safetensors: String,
        pytorch: String,
    },
    /// The file as a whole is malformed (header, archive, pickle stream).
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// One tensor's record is malformed (byte range, dtype, shape, strides).
    #[error("{file}: tensor `{tensor}`: {message}")]
    BadTensor {
        file: String,
        tensor: String,
        message: String,
    },
    /// `data.pkl` uses a pickle opcode this reader does not implement.
    #[error("{file}: unsupported pickle opcode {opcode} at byte {offset} of {entry}")]
    UnsupportedOpcode {
        file: String,
        entry: String,
        opcode: String,
        offset: usize,
    },
    /// `data.pkl` calls a Python global this reader does not implement.
    #[error("{file}: unsupported pickle global `{global}` in {entry} (only plain state dicts of tensors can be read)")]
    UnsupportedGlobal {
        file: String,
        entry: String,
        global: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{file}: tensor `{name}` not found (tried {tried})")]
    MissingTensor {
        file: String,
        name: String,
        tried: String,
    },
    /// A tensor exists but has the wrong shape.
    #[error("{file}: tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        file: String,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
}

impl WeightsError {
    pub(crate) fn format(file: &str, message: impl Into<String>) -> Self {
        WeightsError::Format {
            file: file.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn tensor(file: &str, tensor: &str, message: impl Into<String>) -> Self {
        WeightsError::BadTensor {
            file: file.to_string(),
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }
}

/// One f32 tensor in row-major order.
#[derive(Debug, Clone)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All tensors of one checkpoint, keyed by name as stored.
#[derive(Debug, Default)]
pub struct WeightStore {
    pub tensors: HashMap<String, TensorData>,
    /// The file the tensors came from, for messages.
    pub source: String,
}

impl WeightStore {
    /// Parses a safetensors file held in memory. `source` names it in errors.
    pub fn from_safetensors(bytes: &[u8], source: &str) -> Result<Self, WeightsError> {
        let tensors = safetensors::parse(bytes, source)?;
        Ok(WeightStore {
            tensors,
            source: source.to_string(),
        })
    }

    /// Parses a `torch.save` zip archive (`pytorch_model.bin`) held in memory.
    pub fn from_pytorch(bytes: &[u8], source: &str) -> Result<Self, WeightsError> {
        let tensors = pytorch::parse(bytes, source)?;
        Ok(WeightStore {
            tensors,
            source: source.to_string(),
        })
    }

    /// Reads `dir/model.safetensors`, else `dir/pytorch_model.bin`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self, WeightsError> {
        let st = dir.join(SAFETENSORS_FILE);
        if st.is_file() {
            let bytes = read_file(&st)?;
            return Self::from_safetensors(&bytes, &st.display().to_string());
        }
        let pt = dir.join(PYTORCH_FILE);
        if pt.is_file() {
            let bytes = read_file(&pt)?;
            return Self::from_pytorch(&bytes, &pt.display().to_string());
        }
        Err(WeightsError::NoCheckpoint {
            dir: dir.display().to_string(),
            safetensors: SAFETENSORS_FILE.to_string(),
            pytorch: PYTORCH_FILE.to_string(),
        })
    }

    /// Looks up `name` (also with the `sew_d.` prefix added or removed) and checks its shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&TensorData, WeightsError> {
        let (key, t) = self
            .find(name)
            .ok_or_else(|| self.missing(name, &names::candidates(name)))?;
        if t.shape != shape {
            return Err(WeightsError::ShapeMismatch {
                file: self.source.clone(),
                name: key.to_string(),
                expected: shape.to_vec(),
                actual: t.shape.clone(),
            });
        }
        Ok(t)
    }

    /// Whether a tensor with this name exists (prefix rules as in `get`).
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The positional conv weight of SEW-D with weight norm folded in.
    ///
    /// Accepts `{prefix}.weight_g`/`{prefix}.weight_v` (old `weight_norm`),
    /// `{prefix}.parametrizations.weight.original0`/`original1` (new
    /// parametrization), or a plain `{prefix}.weight`, each with or without
    /// `sew_d.`. `shape` is `[out, in_per_group, k]`, the shape of `weight_v`.
    /// `weight_g` is `[1, 1, k]` (torch `weight_norm(dim=2)`: one norm per kernel
    /// position over output and input channels); a squeezed `[k]` is accepted,
    /// as is any `g` keeping a subset of `v`'s dims (e.g. `[out, 1, 1]` for
    /// `dim=0`) or a single element (norm over the whole tensor).
    /// Returns `g * v / ||v||`; a group whose `v` is all zero gives zeros.
    pub fn weight_normed_conv(
        &self,
        prefix: &str,
        shape: &[usize],
    ) -> Result<TensorData, WeightsError> {
        let mut tried = Vec::new();
        for p in names::candidates(prefix) {
            let pairs = [
                (format!("{p}.weight_g"), format!("{p}.weight_v")),
                (
                    format!("{p}.parametrizations.weight.original0"),
                    format!("{p}.parametrizations.weight.original1"),
                ),
            ];
            for (gname, vname) in pairs {
                match (self.tensors.get(&gname), self.tensors.get(&vname)) {
                    (Some(g), Some(v)) => {
                        return self.fold_weight_norm(&gname, g, &vname, v, shape)
                    }
                    (Some(_), None) => {
                        return Err(self.missing(&vname, std::slice::from_ref(&vname)));
                    }
                    (None, Some(_)) => {
                        return Err(self.missing(&gname, std::slice::from_ref(&gname)));
                    }
                    (None, None) => tried.extend([gname, vname]),
                }
            }
            let wname = format!("{p}.weight");
            if let Some(w) = self.tensors.get(&wname) {
                check_shape(&self.source, &wname, w, shape)?;
                return Ok(w.clone());
            }
            tried.push(wname);
        }
        Err(self.missing(&format!("{prefix}.weight"), &tried))
    }

    fn find(&self, name: &str) -> Option<(&str, &TensorData)> {
        names::candidates(name).into_iter().find_map(|n| {
            self.tensors
                .get_key_value(n.as_str())
                .map(|(k, t)| (k.as_str(), t))
        })
    }

    fn missing(&self, name: &str, tried: &[String]) -> WeightsError {
        let tried = tried
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        WeightsError::MissingTensor {
            file: self.source.clone(),
            name: name.to_string(),
            tried,
        }
    }

    fn fold_weight_norm(
        &self,
        gname: &str,
        g: &TensorData,
        vname: &str,
        v: &TensorData,
        shape: &[usize],
    ) -> Result<TensorData, WeightsError> {
        check_shape(&self.source, vname, v, shape)?;
        let &[o_n, i_n, k_n] = shape else {
            return Err(WeightsError::tensor(
                &self.source,
                vname,
                format!("weight norm folding needs a 3-d conv weight shape, got {shape:?}"),
            ));
        };
        let g_numel: usize = g.shape.iter().product();
        // g's shape as [go, gi, gk], each either 1 or the matching dim of v.
        let gs: [usize; 3] = match *g.shape.as_slice() {
            [a, b, c] if [a, b, c].iter().zip(shape).all(|(&d, &s)| d == 1 || d == s) => [a, b, c],
            [k] if k == k_n => [1, 1, k_n],
            _ if g_numel == 1 => [1, 1, 1],
            _ => {
                return Err(WeightsError::ShapeMismatch {
                    file: self.source.clone(),
                    name: gname.to_string(),
                    expected: vec![1, 1, k_n],
                    actual: g.shape.clone(),
                })
            }
        };
        if g.data.len() != gs[0] * gs[1] * gs[2] || v.data.len() != o_n * i_n * k_n {
            return Err(WeightsError::tensor(
                &self.source,
                gname,
                "data length does not match shape",
            ));
        }
        let group = |o: usize, i: usize, j: usize| {
            let o = if gs[0] == 1 { 0 } else { o };
            let i = if gs[1] == 1 { 0 } else { i };
            let j = if gs[2] == 1 { 0 } else { j };
            (o * gs[1] + i) * gs[2] + j
        };
        let mut sumsq = vec![0f64; g.data.len()];
        let mut idx = 0;
        for o in 0..o_n {
            for i in 0..i_n {
                for j in 0..k_n {
                    let x = f64::from(v.data.get(idx).copied().unwrap_or(0.0));
                    if let Some(s) = sumsq.get_mut(group(o, i, j)) {
                        *s += x * x;
                    }
                    idx += 1;
                }
            }
        }
        let scale: Vec<f64> = sumsq
            .iter()
            .zip(&g.data)
            .map(|(&s, &gv)| {
                if s > 0.0 {
                    f64::from(gv) / s.sqrt()
                } else {
                    0.0
                }
            })
            .collect();
        let mut data = Vec::with_capacity(v.data.len());
        let mut idx = 0;
        for o in 0..o_n {
            for i in 0..i_n {
                for j in 0..k_n {
                    let x = f64::from(v.data.get(idx).copied().unwrap_or(0.0));
                    let s = scale.get(group(o, i, j)).copied().unwrap_or(0.0);
                    data.push((x * s) as f32);
                    idx += 1;
                }
            }
        }
        Ok(TensorData {
            shape: shape.to_vec(),
            data,
        })
    }
}

fn check_shape(
    file: &str,
    name: &str,
    t: &TensorData,
    shape: &[usize],
) -> Result<(), WeightsError> {
    if t.shape != shape {
        return Err(WeightsError::ShapeMismatch {
            file: file.to_string(),
            name: name.to_string(),
            expected: shape.to_vec(),
            actual: t.shape.clone(),
        });
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, WeightsError> {
    std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(entries: &[(&str, Vec<usize>, Vec<f32>)]) -> WeightStore {
        let mut s = WeightStore {
            source: "ckpt.safetensors".into(),
            ..Default::default()
        };
        for (n, shape, data) in entries {
            s.tensors.insert(
                n.to_string(),
                TensorData {
                    shape: shape.clone(),
                    data: data.clone(),
                },
            );
        }
        s
    }

    #[test]
    fn get_tries_both_prefixes() {
        let s = store(&[
            ("sew_d.encoder.a", vec![2], vec![1.0, 2.0]),
            ("encoder.b", vec![1], vec![3.0]),
            ("lm_head.weight", vec![1], vec![4.0]),
        ]);
        assert_eq!(s.get("encoder.a", &[2]).unwrap().data, vec![1.0, 2.0]);
        assert_eq!(s.get("sew_d.encoder.a", &[2]).unwrap().data, vec![1.0, 2.0]);
        assert_eq!(s.get("sew_d.encoder.b", &[1]).unwrap().data, vec![3.0]);
        assert_eq!(s.get("lm_head.weight", &[1]).unwrap().data, vec![4.0]);
        assert!(s.contains("encoder.a") && s.contains("sew_d.encoder.b"));
        assert!(!s.contains("encoder.c"));
    }

    #[test]
    fn wrong_shape_and_missing_messages() {
        let s = store(&[("sew_d.encoder.a", vec![2, 3], vec![0.0; 6])]);
        let e = s.get("encoder.a", &[3, 2]).unwrap_err().to_string();
        assert!(e.contains("ckpt.safetensors"), "{e}");
        assert!(e.contains("`sew_d.encoder.a`"), "{e}");
        assert!(e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
        let e = s.get("encoder.zzz", &[1]).unwrap_err().to_string();
        assert!(
            e.contains("ckpt.safetensors") && e.contains("`encoder.zzz`"),
            "{e}"
        );
        assert!(e.contains("`sew_d.encoder.zzz`"), "{e}");
        let e = s
            .weight_normed_conv("encoder.pos_conv_embed.conv", &[1, 1, 1])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("weight_g") && e.contains("original0") && e.contains("ckpt.safetensors"),
            "{e}"
        );
    }

    #[test]
    fn weight_norm_folding_by_hand() {
        // v: [2, 1, 2]; g: [1, 1, 2]; norm over (o, i) for each kernel position j.
        let v = vec![3.0, 1.0, 4.0, 1.0]; // v[o][0][j]
        let s = store(&[
            ("sew_d.conv.weight_g", vec![1, 1, 2], vec![10.0, 2.0]),
            ("sew_d.conv.weight_v", vec![2, 1, 2], v.clone()),
            (
                "conv2.parametrizations.weight.original0",
                vec![2],
                vec![10.0, 2.0],
            ),
            ("conv2.parametrizations.weight.original1", vec![2, 1, 2], v),
            ("conv3.weight", vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]),
        ]);
        let n0 = 5.0f32; // sqrt(3² + 4²)
        let n1 = 2f32.sqrt();
        let want = [
            10.0 * 3.0 / n0,
            2.0 * 1.0 / n1,
            10.0 * 4.0 / n0,
            2.0 * 1.0 / n1,
        ];
        for name in ["conv", "sew_d.conv", "conv2", "sew_d.conv2"] {
            let w = s.weight_normed_conv(name, &[2, 1, 2]).unwrap();
            assert_eq!(w.shape, vec![2, 1, 2]);
            for (a, b) in w.data.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{name}: {:?}", w.data);
            }
        }
        assert_eq!(
            s.weight_normed_conv("conv3", &[2, 1, 2]).unwrap().data,
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let e = s
            .weight_normed_conv("conv", &[2, 2, 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight_v") && e.contains("[2, 1, 2]"), "{e}");
    }

    #[test]
    fn weight_norm_bad_g_shape_is_an_error() {
        let s = store(&[
            ("c.weight_g", vec![3], vec![1.0; 3]),
            ("c.weight_v", vec![2, 1, 2], vec![1.0; 4]),
            ("d.weight_g", vec![1, 1, 2], vec![1.0]), // data shorter than shape
            ("d.weight_v", vec![2, 1, 2], vec![1.0; 4]),
        ]);
        let e = s
            .weight_normed_conv("c", &[2, 1, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.weight_g"), "{e}");
        assert!(s.weight_normed_conv("d", &[2, 1, 2]).is_err());
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn load_dir_names_both_files() {
        let dir = std::env::temp_dir().join(format!("sewd-weights-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = WeightStore::load_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(SAFETENSORS_FILE) && e.contains(PYTORCH_FILE),
            "{e}"
        );
        assert!(e.contains(&dir.display().to_string()), "{e}");
        let _ = std::fs::remove_dir(&dir);
    }
}
