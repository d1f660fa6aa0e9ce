//! Integer-quantized weights in the compressed-tensors layout.
//!
//! `config.json`'s `quantization_config` with `quant_method: "compressed-tensors"`
//! and `format: "naive-quantized"` is how Hugging Face checkpoints store
//! weight-only integer quantization (llm-compressor writes it; transformers
//! loads it with the `compressed-tensors` package). Each quantized linear layer
//! keeps `{layer}.weight` as integers (int8 for up to 8 bits), a float
//! `{layer}.weight_scale` and, when asymmetric, `{layer}.weight_zero_point`;
//! the float weight is `(weight - zero_point) * scale`, with one scale per
//! tensor (`strategy: "tensor"`), per output row (`"channel"`) or per group of
//! `group_size` inputs in each row (`"group"`). sewd dequantizes on load and
//! computes in f32 as for any checkpoint, so only the download shrinks.
//!
//! Only what gives transformers' numbers is accepted: activation quantization,
//! float and packed formats and sparsity would change or garble the result and
//! are refused, naming the field.

use std::collections::HashMap;

use serde_json::Value;

use super::{TensorData, WeightStore, WeightsError};

const SCALE: &str = ".weight_scale";
const ZERO_POINT: &str = ".weight_zero_point";

/// What `quantization_config` asks of the weights, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightQuantization {
    /// The widest `num_bits` of any config group (at most 8): stored integers
    /// outside its signed range mean the file does not match its config.
    pub num_bits: u32,
}

impl WeightQuantization {
    /// Validates `quantization_config`. Errors are `(field, message)`, the
    /// field spelled from the top of `config.json`.
    pub fn parse(v: &Value) -> Result<Self, (String, String)> {
        let field = |f: &str| format!("quantization_config.{f}");
        let text = |f: &str| v.get(f).and_then(Value::as_str);
        let err = |f: &str, m: String| Err((field(f), m));
        match text("quant_method") {
            Some("compressed-tensors") => {}
            other => {
                return err(
                    "quant_method",
                    format!("{} is not supported (sewd reads compressed-tensors \"naive-quantized\" integer weights only)", show(other)),
                )
            }
        }
        if text("format") != Some("naive-quantized") {
            return err(
                "format",
                format!("{} is not supported (only \"naive-quantized\": integer weights with a float scale)", show(text("format"))),
            );
        }
        if text("quantization_status") != Some("compressed") {
            return err(
                "quantization_status",
                format!("{} is not supported (only \"compressed\": integer weights as stored)", show(text("quantization_status"))),
            );
        }
        for f in ["kv_cache_scheme", "sparsity_config", "transform_config"] {
            if v.get(f).is_some_and(|x| !x.is_null() && x.as_object().is_none_or(|o| !o.is_empty())) {
                return err(f, "is set, and sewd does not support it".into());
            }
        }
        let groups = match v.get("config_groups").and_then(Value::as_object) {
            Some(g) if !g.is_empty() => g,
            _ => return err("config_groups", "expected an object of quantization schemes".into()),
        };
        let mut num_bits = 0;
        for (name, scheme) in groups {
            let at = |f: &str| format!("config_groups.{name}.{f}");
            for f in ["input_activations", "output_activations"] {
                if scheme.get(f).is_some_and(|x| !x.is_null()) {
                    return err(&at(f), "activation quantization is not supported (it changes the result; only weights may be quantized)".into());
                }
            }
            if let Some(fmt) = scheme.get("format").and_then(Value::as_str) {
                if fmt != "naive-quantized" {
                    return err(&at("format"), format!("{fmt:?} is not supported (only \"naive-quantized\")"));
                }
            }
            let Some(w) = scheme.get("weights").filter(|w| w.is_object()) else {
                return err(&at("weights"), "expected the weight quantization arguments".into());
            };
            let wtext = |f: &str| w.get(f).and_then(Value::as_str);
            if wtext("type") != Some("int") {
                return err(&at("weights.type"), format!("{} is not supported (only \"int\")", show(wtext("type"))));
            }
            let bits = w.get("num_bits").and_then(Value::as_u64).filter(|b| (2..=8).contains(b));
            let Some(bits) = bits else {
                return err(&at("weights.num_bits"), format!("{} is not supported (2 to 8 bits, stored as int8)", w.get("num_bits").unwrap_or(&Value::Null)));
            };
            num_bits = num_bits.max(bits as u32);
            if !matches!(wtext("strategy"), Some("tensor" | "channel" | "group")) {
                return err(&at("weights.strategy"), format!("{} is not supported (\"tensor\", \"channel\" or \"group\")", show(wtext("strategy"))));
            }
            if w.get("dynamic").and_then(Value::as_bool).unwrap_or(false) {
                return err(&at("weights.dynamic"), "dynamic weight quantization is not supported".into());
            }
        }
        Ok(WeightQuantization { num_bits })
    }
}

fn show(s: Option<&str>) -> String {
    s.map_or("a missing value".into(), |s| format!("{s:?}"))
}

impl WeightStore {
    /// The store with every quantized weight (one with a `weight_scale`)
    /// turned back into f32, and the scales and zero points dropped.
    pub fn dequantized(&self, q: &WeightQuantization) -> Result<WeightStore, WeightsError> {
        let mut tensors: HashMap<String, TensorData> = HashMap::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            if name.ends_with(SCALE) || name.ends_with(ZERO_POINT) {
                continue;
            }
            let layer = name.strip_suffix(".weight");
            let scale = layer.and_then(|l| self.tensors.get(&format!("{l}{SCALE}")));
            let t = match (layer, scale) {
                (Some(layer), Some(scale)) => self.dequantize(layer, t, scale, q)?,
                _ => t.clone(),
            };
            tensors.insert(name.clone(), t);
        }
        if let Some(z) = self.tensors.keys().find(|k| k.strip_suffix(ZERO_POINT).is_some_and(|l| !self.tensors.contains_key(&format!("{l}{SCALE}")))) {
            return Err(WeightsError::tensor(&self.source, z, "a zero point without its weight_scale"));
        }
        Ok(WeightStore { tensors, source: self.source.clone() })
    }

    /// Errors if the checkpoint holds quantized weights that `config.json`
    /// does not declare: read as plain floats they would be wrong.
    pub fn check_unquantized(&self) -> Result<(), WeightsError> {
        match self.tensors.keys().filter(|k| k.ends_with(SCALE) || k.ends_with(ZERO_POINT)).min() {
            Some(k) => Err(WeightsError::tensor(
                &self.source,
                k,
                "the checkpoint holds quantized weights, but config.json has no quantization_config to say how to read them",
            )),
            None => Ok(()),
        }
    }

    fn dequantize(&self, layer: &str, w: &TensorData, scale: &TensorData, q: &WeightQuantization) -> Result<TensorData, WeightsError> {
        let name = format!("{layer}.weight");
        let bad = |tensor: &str, m: String| Err(WeightsError::tensor(&self.source, tensor, m));
        let [rows, cols] = w.shape[..] else {
            return bad(&name, format!("a quantized weight must be a matrix, found shape {:?}", w.shape));
        };
        let limit = (1i32 << (q.num_bits - 1)) as f32;
        if let Some(x) = w.data.iter().find(|x| x.fract() != 0.0 || **x < -limit || **x >= limit) {
            return bad(&name, format!("holds {x}, not a {}-bit integer, though it has a weight_scale", q.num_bits));
        }
        let scale_name = format!("{layer}{SCALE}");
        // [rows, groups] with rows 1 (one scale for all rows) or `rows`, and groups
        // dividing the columns; a bare [n] or scalar is read as [n, 1].
        let (s_rows, groups) = match scale.shape[..] {
            [] => (1, 1),
            [n] => (n, 1),
            [r, g] => (r, g),
            _ => (0, 0),
        };
        if !(s_rows == 1 || s_rows == rows) || groups == 0 || cols % groups != 0 {
            return bad(
                &scale_name,
                format!("shape {:?} does not fit the weight's {:?} (one scale, one per row, or one per group of columns)", scale.shape, w.shape),
            );
        }
        let zero_name = format!("{layer}{ZERO_POINT}");
        let zero = self.tensors.get(&zero_name);
        if let Some(z) = zero {
            if z.data.len() != scale.data.len() {
                return bad(&zero_name, format!("shape {:?} differs from the weight_scale's {:?}", z.shape, scale.shape));
            }
        }
        if let Some(x) = scale.data.iter().find(|x| !x.is_finite()) {
            return bad(&scale_name, format!("holds {x}"));
        }
        let group = cols / groups;
        let data = w
            .data
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let k = if s_rows == 1 { 0 } else { i / cols * groups } + i % cols / group;
                (x - zero.map_or(0.0, |z| z.data[k])) * scale.data[k]
            })
            .collect();
        Ok(TensorData { shape: w.shape.clone(), data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "quant_method": "compressed-tensors", "format": "naive-quantized", "quantization_status": "compressed",
            "ignore": ["lm_head"], "sparsity_config": {},
            "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null, "format": "naive-quantized",
                "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel", "dynamic": false}}}
        })
    }

    fn store(entries: &[(&str, &[usize], &[f32])]) -> WeightStore {
        let tensors = entries.iter().map(|(n, s, d)| (n.to_string(), TensorData { shape: s.to_vec(), data: d.to_vec() })).collect();
        WeightStore { tensors, source: "q.safetensors".into() }
    }

    #[test]
    fn parses_weight_only_int8() {
        assert_eq!(WeightQuantization::parse(&config()), Ok(WeightQuantization { num_bits: 8 }));
    }

    #[test]
    fn refuses_what_would_change_the_result() {
        let cases: [(&str, Value, &str); 6] = [
            ("/quant_method", json!("gptq"), "quantization_config.quant_method"),
            ("/format", json!("pack-quantized"), "quantization_config.format"),
            ("/quantization_status", json!("frozen"), "quantization_config.quantization_status"),
            ("/config_groups/group_0/input_activations", json!({"num_bits": 8}), "group_0.input_activations"),
            ("/config_groups/group_0/weights/type", json!("float"), "group_0.weights.type"),
            ("/config_groups/group_0/weights/strategy", json!("block"), "group_0.weights.strategy"),
        ];
        for (path, value, field) in cases {
            let mut c = config();
            *c.pointer_mut(path).unwrap() = value;
            let (f, m) = WeightQuantization::parse(&c).unwrap_err();
            assert!(f.ends_with(field), "{path}: {f}: {m}");
        }
    }

    #[test]
    fn dequantizes_per_channel_per_group_and_with_zero_points() {
        let q = WeightQuantization { num_bits: 8 };
        let s = store(&[
            ("a.weight", &[2, 2], &[1.0, -2.0, 3.0, 127.0]),
            ("a.weight_scale", &[2, 1], &[0.5, 2.0]),
            ("a.bias", &[2], &[9.0, 9.0]),
            ("b.weight", &[1, 4], &[1.0, 2.0, 3.0, 4.0]),
            ("b.weight_scale", &[1, 2], &[1.0, 10.0]),
            ("b.weight_zero_point", &[1, 2], &[1.0, -1.0]),
            ("c.weight", &[2], &[0.25, 0.5]),
        ]);
        let d = s.dequantized(&q).unwrap();
        assert_eq!(d.tensors["a.weight"].data, [0.5, -1.0, 6.0, 254.0]);
        assert_eq!(d.tensors["b.weight"].data, [0.0, 1.0, 40.0, 50.0]);
        assert_eq!(d.tensors["a.bias"].data, [9.0, 9.0]);
        assert_eq!(d.tensors["c.weight"].data, [0.25, 0.5]);
        assert!(!d.tensors.keys().any(|k| k.contains("_scale") || k.contains("zero_point")));
    }

    #[test]
    fn bad_quantized_tensors_are_named() {
        let q = WeightQuantization { num_bits: 8 };
        let not_int = store(&[("a.weight", &[1, 2], &[0.5, 1.0]), ("a.weight_scale", &[1, 1], &[1.0])]);
        let e = not_int.dequantized(&q).unwrap_err().to_string();
        assert!(e.contains("`a.weight`") && e.contains("8-bit integer"), "{e}");
        let bad_scale = store(&[("a.weight", &[2, 3], &[0.0; 6]), ("a.weight_scale", &[3, 1], &[1.0; 3])]);
        let e = bad_scale.dequantized(&q).unwrap_err().to_string();
        assert!(e.contains("`a.weight_scale`") && e.contains("[3, 1]"), "{e}");
        let undeclared = store(&[("a.weight", &[1, 1], &[3.0]), ("a.weight_scale", &[1, 1], &[1.0])]);
        let e = undeclared.check_unquantized().unwrap_err().to_string();
        assert!(e.contains("`a.weight_scale`") && e.contains("quantization_config"), "{e}");
        assert!(store(&[("a.weight", &[1, 1], &[3.0])]).check_unquantized().is_ok());
    }
}
