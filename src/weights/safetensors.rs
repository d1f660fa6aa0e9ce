//! The safetensors format: an 8-byte little-endian header length, a JSON
//! header mapping names to `{dtype, shape, data_offsets}` (offsets relative to
//! the data section that follows the header), and the raw little-endian data.

use std::collections::HashMap;

use serde::Deserialize;

use super::dtype::DType;
use super::{TensorData, WeightsError};

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<HashMap<String, TensorData>, WeightsError> {
    let (len_bytes, rest) = bytes.split_first_chunk::<8>().ok_or_else(|| {
        WeightsError::format(
            file,
            format!(
                "file is {} bytes, too short for a safetensors header (truncated?)",
                bytes.len()
            ),
        )
    })?;
    let header_len = u64::from_le_bytes(*len_bytes);
    if header_len > rest.len() as u64 {
        return Err(WeightsError::format(
            file,
            format!(
                "safetensors header claims {header_len} bytes but only {} follow (truncated, or not a safetensors file)",
                rest.len()
            ),
        ));
    }
    // header_len <= rest.len(), so it fits in usize.
    let (header, data) = rest.split_at(header_len as usize);
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| {
            WeightsError::format(
                file,
                format!("safetensors header is not a JSON object: {e}"),
            )
        })?;

    let mut entries = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let entry: Entry = serde_json::from_value(value)
            .map_err(|e| WeightsError::tensor(file, &name, format!("bad header entry: {e}")))?;
        entries.push((name, entry));
    }
    // Tensors must not share bytes (the format's own rule): overlapping
    // entries would let a small file decode into any number of copies.
    let mut spans: Vec<(u64, u64, &str)> = entries.iter().map(|(n, e)| (e.data_offsets.0, e.data_offsets.1, n.as_str())).filter(|s| s.0 < s.1).collect();
    spans.sort_unstable();
    if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(WeightsError::tensor(
            file,
            w[1].2,
            format!("data_offsets [{}, {}] overlap those of {} [{}, {}]", w[1].0, w[1].1, w[0].2, w[0].0, w[0].1),
        ));
    }

    let mut tensors = HashMap::with_capacity(entries.len());
    for (name, entry) in entries {
        let (start, end) = entry.data_offsets;
        if start > end || end > data.len() as u64 {
            return Err(WeightsError::tensor(
                file,
                &name,
                format!(
                    "data_offsets [{start}, {end}] fall outside the {}-byte data section (truncated file?)",
                    data.len()
                ),
            ));
        }
        // Both are <= data.len(), so they fit in usize.
        let Some(raw) = data.get(start as usize..end as usize) else {
            return Err(WeightsError::tensor(
                file,
                &name,
                "data_offsets out of range",
            ));
        };
        let Some(dtype) = DType::from_safetensors(&entry.dtype) else {
            // Not a type we convert (e.g. U64, F8_*): skip it rather than fail.
            continue;
        };
        let mut shape = Vec::with_capacity(entry.shape.len().min(64));
        let mut numel: usize = 1;
        for &d in &entry.shape {
            let d = usize::try_from(d).ok();
            numel = match d.and_then(|d| numel.checked_mul(d)) {
                Some(n) => n,
                None => {
                    return Err(WeightsError::tensor(
                        file,
                        &name,
                        format!("shape {:?} has too many elements", entry.shape),
                    ))
                }
            };
            shape.push(d.unwrap_or(0));
        }
        let expected = numel.checked_mul(dtype.size());
        if expected != Some(raw.len()) {
            return Err(WeightsError::tensor(
                file,
                &name,
                format!(
                    "shape {:?} of {} needs {} bytes but data_offsets [{start}, {end}] span {}",
                    entry.shape,
                    entry.dtype,
                    expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                    raw.len()
                ),
            ));
        }
        let mut values = Vec::new();
        dtype.decode_all(raw, false, &mut values);
        tensors.insert(
            name,
            TensorData {
                shape,
                data: values,
            },
        );
    }
    Ok(tensors)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::weights::WeightStore;

    /// Builds a safetensors file: (name, dtype, shape, raw little-endian bytes).
    pub(crate) fn build(entries: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut data = Vec::new();
        for (name, dtype, shape, raw) in entries {
            let start = data.len();
            data.extend_from_slice(raw);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(&data);
        out
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A file with a hand-written header.
    fn raw_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_dtypes() {
        let f16: Vec<u8> = [1.0f32, -0.5]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = [2.0f32]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let f64s: Vec<u8> = [0.25f64, 8.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let file = build(&[
            ("sew_d.a", "F32", &[2, 2], f32s(&[1.0, 2.0, 3.0, 4.0])),
            ("h", "F16", &[2], f16),
            ("b", "BF16", &[1], bf16),
            ("d", "F64", &[2, 1], f64s),
            ("n", "I64", &[], 5i64.to_le_bytes().to_vec()),
            ("u", "U64", &[1], 5u64.to_le_bytes().to_vec()),
            ("e", "F32", &[0, 3], vec![]),
        ]);
        let s = WeightStore::from_safetensors(&file, "m.safetensors").unwrap();
        assert_eq!(s.source, "m.safetensors");
        assert_eq!(s.get("a", &[2, 2]).unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.get("h", &[2]).unwrap().data, vec![1.0, -0.5]);
        assert_eq!(s.get("b", &[1]).unwrap().data, vec![2.0]);
        assert_eq!(s.get("d", &[2, 1]).unwrap().data, vec![0.25, 8.0]);
        assert_eq!(s.get("n", &[]).unwrap().data, vec![5.0]);
        assert_eq!(s.get("e", &[0, 3]).unwrap().data, Vec::<f32>::new());
        assert!(!s.contains("u"), "unsupported dtypes are skipped");
    }

    fn err(bytes: &[u8]) -> String {
        WeightStore::from_safetensors(bytes, "bad.safetensors")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn truncated_files_are_errors() {
        let file = build(&[("w", "F32", &[4], f32s(&[1.0, 2.0, 3.0, 4.0]))]);
        for cut in 0..file.len() {
            let e = err(&file[..cut]);
            assert!(e.contains("bad.safetensors"), "{e}");
            // Cut inside the data: the message names the tensor.
            if cut > file.len() - 16 {
                assert!(e.contains("`w`"), "{e}");
            }
        }
        assert!(err(&[]).contains("too short"));
    }

    #[test]
    fn header_claiming_too_many_bytes() {
        let mut file = u64::MAX.to_le_bytes().to_vec();
        file.extend_from_slice(b"{}");
        let e = err(&file);
        assert!(e.contains("bad.safetensors") && e.contains("claims"), "{e}");
        let mut file = 1000u64.to_le_bytes().to_vec();
        file.extend_from_slice(b"{}");
        assert!(err(&file).contains("claims 1000 bytes"));
    }

    #[test]
    fn bad_offsets_and_shapes() {
        let data = f32s(&[1.0, 2.0]);
        let e = err(&raw_header(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#,
            &data,
        ));
        assert!(e.contains("`w`") && e.contains("outside"), "{e}");
        let e = err(&raw_header(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,4]}}"#,
            &data,
        ));
        assert!(e.contains("`w`"), "{e}");
        let e = err(&raw_header(
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            &data,
        ));
        assert!(e.contains("`w`") && e.contains("needs 12 bytes"), "{e}");
        let huge = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#;
        let e = err(&raw_header(huge, &data));
        assert!(e.contains("`w`") && e.contains("too many"), "{e}");
        let e = err(&raw_header(
            r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#,
            &data,
        ));
        assert!(e.contains("`w`"), "{e}");
        let e = err(&raw_header(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &data,
        ));
        assert!(e.contains("`b`") && e.contains("overlap") && e.contains("a [0, 8]"), "{e}");
        let e = err(&raw_header(r#"{"w":{"dtype":"F32","shape":[2]}}"#, &data));
        assert!(e.contains("`w`") && e.contains("data_offsets"), "{e}");
        let e = err(&raw_header(r#"[1, 2]"#, &data));
        assert!(e.contains("JSON object"), "{e}");
        let e = err(&raw_header("{\"w\":", &data));
        assert!(e.contains("bad.safetensors"), "{e}");
    }

    #[test]
    fn reads_torch_made_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/weights/expected.safetensors"
        );
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let s = WeightStore::from_safetensors(&bytes, "expected.safetensors").unwrap();
        let a = s.get("weightnorm_old/folded", &[8, 4, 5]).unwrap();
        assert_eq!(a.data.len(), 160);
        assert!(s.contains("contiguous/scalar"));
    }
}
