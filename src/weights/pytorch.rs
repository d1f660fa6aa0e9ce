//! The `torch.save` zip format of `pytorch_model.bin` (PyTorch ≥ 1.6):
//! `<archive>/data.pkl` pickles the state dict, whose tensors point by
//! persistent id at raw storages `<archive>/data/<key>`; `<archive>/byteorder`
//! says `little` or `big` (little when absent).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use zip::{CompressionMethod, ZipArchive};

use super::dtype::DType;
use super::pickle::{self, TensorRef, Value};
use super::{TensorData, WeightsError};

struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    archive_len: u64,
}

impl Archive<'_> {
    fn index_for_name(&self, name: &str) -> Option<usize> {
        self.zip.index_for_name(name)
    }
}

/// The magic number that starts a legacy (pre-zip) `torch.save` file.
const LEGACY_MAGIC: [u8; 4] = [0x80, 0x02, 0x8a, 0x0a];

/// Keys under which trainers nest the state dict, tried in order.
const NESTED_KEYS: [&str; 6] = [
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "params",
];

/// A view larger than its storage (stride-0 broadcast) is refused beyond this many elements.
const MAX_BROADCAST_NUMEL: usize = 1 << 24;

pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<HashMap<String, TensorData>, WeightsError> {
    if bytes.starts_with(&LEGACY_MAGIC) {
        return Err(WeightsError::format(
            file,
            "legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=False) is not supported; \
             re-save it with a recent torch or convert it to model.safetensors",
        ));
    }
    if !bytes.starts_with(b"PK") {
        return Err(WeightsError::format(
            file,
            "not a zip archive, so not a torch.save checkpoint",
        ));
    }
    let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        WeightsError::format(file, format!("cannot open zip archive (truncated?): {e}"))
    })?;
    let mut zip = Archive {
        zip,
        archive_len: bytes.len() as u64,
    };

    let names: Vec<String> = zip.zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .filter(|n| n.as_str() == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.matches('/').count())
        .ok_or_else(|| {
            WeightsError::format(
                file,
                "zip archive has no data.pkl, so it is not a torch.save checkpoint",
            )
        })?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();

    let big_endian = match read_entry(&mut zip, &format!("{prefix}byteorder"), file)? {
        None => false,
        Some(b) => match b.trim_ascii() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(WeightsError::format(
                    file,
                    format!(
                        "{prefix}byteorder says {:?}",
                        String::from_utf8_lossy(other)
                    ),
                ))
            }
        },
    };

    let pkl_bytes = read_entry(&mut zip, pkl, file)?.unwrap_or_default();
    let root = pickle::load(&pkl_bytes, file, pkl)?;
    let entries = state_dict_entries(&root, file)?;
    drop(root);

    // Read each storage once, convert the tensors that view it, then let it go.
    let mut by_storage: Vec<(String, Rc<TensorRef>, DType)> = entries
        .into_iter()
        .filter_map(|(name, t)| t.storage.dtype.map(|d| (name, t, d)))
        .collect();
    by_storage.sort_by(|a, b| a.1.storage.key.cmp(&b.1.storage.key));
    let mut out = HashMap::with_capacity(by_storage.len());
    let mut current: Option<(String, Vec<u8>)> = None;
    // Many names may view one storage (tied weights), each decoded on its own.
    // A crafted file can repeat a broadcast view under thousands of names for
    // a few bytes each, so the total is capped by what the file can hold.
    let mut budget = bytes.len().saturating_mul(2).saturating_add(MAX_BROADCAST_NUMEL);
    for (name, t, dtype) in by_storage {
        let numel = t.size.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        budget = budget.checked_sub(numel).ok_or_else(|| {
            WeightsError::tensor(file, &name, "the tensors decode to more than twice the file's size in elements (many views of one storage?)")
        })?;
        let key = &t.storage.key;
        if current.as_ref().map(|c| &c.0) != Some(key) {
            drop(current.take()); // free the previous storage first
            let entry = format!("{prefix}data/{key}");
            let raw = read_entry(&mut zip, &entry, file)?.ok_or_else(|| {
                WeightsError::tensor(
                    file,
                    &name,
                    format!("its storage {entry} is missing from the archive"),
                )
            })?;
            current = Some((key.clone(), raw));
        }
        let raw = current.as_ref().map(|c| c.1.as_slice()).unwrap_or_default();
        let data =
            gather(raw, dtype, big_endian, &t).map_err(|m| WeightsError::tensor(file, &name, m))?;
        out.insert(
            name,
            TensorData {
                shape: t.size.clone(),
                data,
            },
        );
    }
    Ok(out)
}

/// Reads one archive entry, or `None` when there is no entry of that name.
fn read_entry(
    zip: &mut Archive<'_>,
    name: &str,
    file: &str,
) -> Result<Option<Vec<u8>>, WeightsError> {
    let Some(index) = zip.index_for_name(name) else {
        return Ok(None);
    };
    let archive_len = zip.archive_len;
    let bad = |m: String| WeightsError::format(file, format!("archive entry {name}: {m}"));
    let mut f = zip.zip.by_index(index).map_err(|e| bad(e.to_string()))?;
    let size = f.size();
    // Stored entries cannot be larger than the archive; deflate expands at most ~1032×.
    let limit = match f.compression() {
        CompressionMethod::Stored => archive_len,
        _ => f
            .compressed_size()
            .saturating_mul(1100)
            .saturating_add(1024),
    };
    if size > limit {
        return Err(bad(format!(
            "claims {size} bytes, more than the archive can hold"
        )));
    }
    let mut buf = Vec::with_capacity(usize::try_from(size.min(archive_len)).unwrap_or(0));
    (&mut f)
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if buf.len() as u64 != size {
        return Err(bad(format!("truncated: {} of {size} bytes", buf.len())));
    }
    // Reading at the end makes the zip reader check the CRC.
    match f.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Ok(_) => return Err(bad(format!("holds more than the {size} bytes it declares"))),
        Err(e) => return Err(bad(format!("corrupt: {e}"))),
    }
    Ok(Some(buf))
}

/// The `(name, tensor)` pairs of the state dict, last one winning for repeated names.
fn state_dict_entries(
    root: &Value,
    file: &str,
) -> Result<Vec<(String, Rc<TensorRef>)>, WeightsError> {
    let Value::Dict(top) = root else {
        return Err(WeightsError::format(
            file,
            format!("data.pkl holds a {}, not a state dict", root.kind()),
        ));
    };
    let direct = tensors_of(&top.0.borrow());
    if !direct.is_empty() {
        return Ok(direct);
    }
    let items = top.0.borrow();
    let nested = |want: Option<&str>| {
        items.iter().rev().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Dict(d)) if want.is_none_or(|w| w == k.as_ref()) => {
                Some(tensors_of(&d.0.borrow())).filter(|t| !t.is_empty())
            }
            _ => None,
        })
    };
    NESTED_KEYS
        .iter()
        .find_map(|&k| nested(Some(k)))
        .or_else(|| nested(None))
        .ok_or_else(|| {
            WeightsError::format(
                file,
                "data.pkl holds a dict with no tensors in it (not a state dict?)",
            )
        })
}

fn tensors_of(items: &[(Value, Value)]) -> Vec<(String, Rc<TensorRef>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(String, Rc<TensorRef>)> = Vec::new();
    for (k, v) in items {
        if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
            match index.get(k.as_ref()).and_then(|&i| out.get_mut(i)) {
                Some(slot) => slot.1 = t.clone(),
                None => {
                    index.insert(k.as_ref(), out.len());
                    out.push((k.to_string(), t.clone()));
                }
            }
        }
    }
    out
}

/// Copies a strided view out of its storage's raw bytes into row-major f32.
fn gather(raw: &[u8], dtype: DType, big_endian: bool, t: &TensorRef) -> Result<Vec<f32>, String> {
    let es = dtype.size();
    let storage_numel = raw.len() / es;
    let what = || {
        format!(
            "view (offset {}, size {:?}, stride {:?}) of storage data/{} ({}, {storage_numel} elements)",
            t.offset, t.size, t.stride, t.storage.key, t.storage.type_name
        )
    };
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("{} has too many elements", what()))?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Keep only dims of size > 1: size-1 dims never move and may carry any stride.
    let dims: Vec<(usize, usize)> = t
        .size
        .iter()
        .copied()
        .zip(t.stride.iter().copied())
        .filter(|&(s, _)| s > 1)
        .collect();
    let last = dims.iter().try_fold(t.offset, |acc, &(s, st)| {
        (s - 1).checked_mul(st).and_then(|x| acc.checked_add(x))
    });
    match last {
        Some(last) if last < storage_numel => {}
        _ => return Err(format!("{} reaches past the end of the storage", what())),
    }
    if numel > storage_numel && numel > MAX_BROADCAST_NUMEL {
        return Err(format!("{} has more elements than its storage", what()));
    }

    let mut expected = 1usize;
    let contiguous = dims.iter().rev().all(|&(s, st)| {
        let ok = st == expected;
        expected = expected.saturating_mul(s);
        ok
    });
    let mut out = Vec::with_capacity(numel);
    if contiguous {
        // offset + numel - 1 == last < storage_numel, so this is in range.
        let bytes = t
            .offset
            .checked_mul(es)
            .and_then(|start| Some(start..start.checked_add(numel.checked_mul(es)?)?))
            .and_then(|r| raw.get(r))
            .ok_or_else(|| format!("{} reaches past the end of the storage", what()))?;
        dtype.decode_all(bytes, big_endian, &mut out);
        return Ok(out);
    }

    // Odometer over the multi-index; every position is <= last < storage_numel.
    let mut idx = vec![0usize; dims.len()];
    let mut pos = t.offset;
    loop {
        let b = pos
            .checked_mul(es)
            .and_then(|s| raw.get(s..s.checked_add(es)?))
            .ok_or_else(|| format!("{} reaches past the end of the storage", what()))?;
        out.push(dtype.decode(b, big_endian));
        let mut d = dims.len();
        loop {
            if d == 0 {
                return Ok(out);
            }
            d -= 1;
            let (Some(i), Some(&(s, st))) = (idx.get_mut(d), dims.get(d)) else {
                return Ok(out);
            };
            *i += 1;
            pos = pos.wrapping_add(st);
            if *i < s {
                break;
            }
            *i = 0;
            pos = pos.wrapping_sub(st.wrapping_mul(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::WeightStore;
    use std::io::Write;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/weights");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}"))
            .unwrap_or_else(|e| panic!("{FIXTURES}/{name}: {e}"))
    }

    fn expected() -> WeightStore {
        WeightStore::from_safetensors(&fixture("expected.safetensors"), "expected.safetensors")
            .unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}: {a:?} vs {b:?}"
            );
        }
    }

    /// Loads `<stem>.bin` and checks every tensor `expected.safetensors` lists for it.
    fn check_fixture(stem: &str) -> WeightStore {
        let s = WeightStore::from_pytorch(&fixture(&format!("{stem}.bin")), &format!("{stem}.bin"))
            .unwrap();
        let want = expected();
        let mut n = 0;
        for (k, t) in &want.tensors {
            let Some(key) = k.strip_prefix(&format!("{stem}/")) else {
                continue;
            };
            if key == "folded" {
                continue;
            }
            let got = s
                .tensors
                .get(key)
                .unwrap_or_else(|| panic!("{stem}: {key} missing"));
            assert_eq!(got.shape, t.shape, "{stem}/{key}");
            assert_eq!(got.data, t.data, "{stem}/{key}");
            n += 1;
        }
        assert!(
            n > 0 && n == s.tensors.len(),
            "{stem}: {n} vs {:?}",
            s.tensors.keys()
        );
        s
    }

    #[test]
    fn torch_contiguous_views_and_dtypes() {
        let s = check_fixture("contiguous");
        assert_eq!(s.get("scalar", &[]).unwrap().data, vec![2.5]);
        assert_eq!(s.source, "contiguous.bin");
        let s = check_fixture("views");
        assert_eq!(s.get("t", &[4, 3]).unwrap().shape, vec![4, 3]);
        let s = check_fixture("dtypes");
        assert_eq!(s.get("num_batches_tracked", &[]).unwrap().data, vec![7.0]);
    }

    #[test]
    fn torch_weight_norm_folding() {
        let want = expected();
        let old = check_fixture("weightnorm_old"); // nested under "state_dict", `sew_d.` names
        let new = check_fixture("weightnorm_param"); // parametrizations naming, protocol 4
        for (stem, s) in [("weightnorm_old", &old), ("weightnorm_param", &new)] {
            let folded = &want.tensors[&format!("{stem}/folded")];
            for prefix in [
                "encoder.pos_conv_embed.conv",
                "sew_d.encoder.pos_conv_embed.conv",
            ] {
                let w = s.weight_normed_conv(prefix, &[8, 4, 5]).unwrap();
                assert_close(&w.data, &folded.data, 1e-5, stem);
                assert!(s.get(&format!("{prefix}.bias"), &[8]).is_ok());
            }
        }
        let e = old
            .weight_normed_conv("encoder.pos_conv_embed.conv", &[8, 8, 5])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("weightnorm_old.bin") && e.contains("weight_v") && e.contains("[8, 4, 5]"),
            "{e}"
        );
    }

    #[test]
    fn truncated_archives_are_errors() {
        let bytes = fixture("views.bin");
        for cut in (0..bytes.len()).step_by(7) {
            let e = WeightStore::from_pytorch(&bytes[..cut], "views.bin")
                .unwrap_err()
                .to_string();
            assert!(e.contains("views.bin"), "{e}");
        }
    }

    // ---- hand-made archives ----

    struct Tensor<'a> {
        name: &'a str,
        storage: &'a str,
        key: &'a str,
        offset: u8,
        size: &'a [u8],
        stride: &'a [u8],
    }

    /// A protocol-2 pickle of `{name: _rebuild_tensor_v2(...)}` built op by op.
    fn pickle_of(tensors: &[Tensor], wrap: Option<&str>) -> Vec<u8> {
        fn s(p: &mut Vec<u8>, text: &str) {
            p.push(b'X');
            p.extend((text.len() as u32).to_le_bytes());
            p.extend(text.as_bytes());
        }
        fn tuple(p: &mut Vec<u8>, v: &[u8]) {
            p.push(b'(');
            for &x in v {
                p.extend([b'K', x]);
            }
            p.push(b't');
        }
        let mut p = vec![0x80, 2];
        if let Some(w) = wrap {
            p.push(b'}');
            s(&mut p, w);
        }
        p.extend(b"ccollections\nOrderedDict\n)R(");
        for t in tensors {
            s(&mut p, t.name);
            p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
            s(&mut p, "storage");
            p.extend(format!("ctorch\n{}\n", t.storage).as_bytes());
            s(&mut p, t.key);
            s(&mut p, "cpu");
            p.extend([b'K', 0, b't', b'Q', b'K', t.offset]);
            tuple(&mut p, t.size);
            tuple(&mut p, t.stride);
            p.extend(b"\x89ccollections\nOrderedDict\n)RtR");
        }
        p.push(b'u');
        // BUILD with OrderedDict state, as torch writes `_metadata`
        p.extend(b"}b");
        if wrap.is_some() {
            p.push(b's');
        }
        p.push(b'.');
        p
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for (name, data) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn hand_made_views_and_nesting() {
        let t = |name, offset, size, stride| Tensor {
            name,
            storage: "FloatStorage",
            key: "0",
            offset,
            size,
            stride,
        };
        let pkl = pickle_of(
            &[
                t("full", 0, &[2, 3], &[3, 1]),
                t("transposed", 0, &[3, 2], &[1, 3]),
                t("tail", 4, &[2], &[1]),
                t("every_other", 1, &[3], &[2]),
                t("ones", 5, &[1, 1], &[99, 42]),
            ],
            Some("model"),
        );
        let data = f32s(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let bin = archive(&[
            ("m/data.pkl", &pkl),
            ("m/byteorder", b"little"),
            ("m/data/0", &data),
        ]);
        let s = WeightStore::from_pytorch(&bin, "m.bin").unwrap();
        assert_eq!(
            s.get("full", &[2, 3]).unwrap().data,
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(
            s.get("transposed", &[3, 2]).unwrap().data,
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        assert_eq!(s.get("tail", &[2]).unwrap().data, vec![4.0, 5.0]);
        assert_eq!(
            s.get("every_other", &[3]).unwrap().data,
            vec![1.0, 3.0, 5.0]
        );
        assert_eq!(s.get("ones", &[1, 1]).unwrap().data, vec![5.0]);
    }

    #[test]
    fn big_endian_and_skipped_dtypes() {
        let pkl = pickle_of(
            &[
                Tensor {
                    name: "w",
                    storage: "FloatStorage",
                    key: "0",
                    offset: 0,
                    size: &[2],
                    stride: &[1],
                },
                Tensor {
                    name: "c",
                    storage: "ComplexFloatStorage",
                    key: "1",
                    offset: 0,
                    size: &[1],
                    stride: &[1],
                },
            ],
            None,
        );
        let data: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let bin = archive(&[
            ("a/data.pkl", &pkl),
            ("a/byteorder", b"big"),
            ("a/data/0", &data),
            ("a/data/1", &[0; 8]),
        ]);
        let s = WeightStore::from_pytorch(&bin, "be.bin").unwrap();
        assert_eq!(s.get("w", &[2]).unwrap().data, vec![1.5, -2.0]);
        assert!(!s.contains("c"));
    }

    fn err(files: &[(&str, &[u8])]) -> String {
        WeightStore::from_pytorch(&archive(files), "bad.bin")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn storage_problems_name_the_tensor() {
        let one = |size: &'static [u8], stride: &'static [u8], offset| {
            pickle_of(
                &[Tensor {
                    name: "enc.w",
                    storage: "FloatStorage",
                    key: "0",
                    offset,
                    size,
                    stride,
                }],
                None,
            )
        };
        let data = f32s(&[0.0; 6]);
        for pkl in [
            one(&[7], &[1], 0),
            one(&[2, 3], &[1, 3], 0),
            one(&[6], &[1], 1),
            one(&[2], &[200], 0),
        ] {
            let e = err(&[("a/data.pkl", &pkl), ("a/data/0", &data)]);
            assert!(
                e.contains("bad.bin") && e.contains("`enc.w`") && e.contains("past the end"),
                "{e}"
            );
        }
        let e = err(&[("a/data.pkl", &one(&[2], &[1], 0))]);
        assert!(
            e.contains("`enc.w`") && e.contains("a/data/0") && e.contains("missing"),
            "{e}"
        );
        // broadcast views bigger than their storage are refused past a limit
        let pkl = one(&[255, 255, 255, 255], &[0, 0, 0, 0], 0);
        let e = err(&[("a/data.pkl", &pkl), ("a/data/0", &data)]);
        assert!(e.contains("`enc.w`"), "{e}");
        // ... and so are many names for one such view: each is under the
        // limit, together they are far over what the file holds
        let view = |name| Tensor { name, storage: "FloatStorage", key: "0", offset: 0, size: &[255, 255, 255], stride: &[0, 0, 0] };
        let pkl = pickle_of(&[view("a"), view("b"), view("c")], None);
        let e = err(&[("a/data.pkl", &pkl), ("a/data/0", &data)]);
        assert!(e.contains("views of one storage"), "{e}");
    }

    #[test]
    fn non_checkpoints_are_errors() {
        let e = WeightStore::from_pytorch(b"hello", "x.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.bin") && e.contains("zip"), "{e}");
        let e = WeightStore::from_pytorch(&[0x80, 0x02, 0x8a, 0x0a, 0x6c], "old.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("old.bin") && e.contains("legacy"), "{e}");
        let e = err(&[("a/other", b"x")]);
        assert!(e.contains("data.pkl"), "{e}");
        let e = err(&[("a/data.pkl", b"\x80\x02}.")]);
        assert!(e.contains("no tensors"), "{e}");
        let e = err(&[("a/data.pkl", b"\x80\x02K\x01.")]);
        assert!(e.contains("int"), "{e}");
        let e = err(&[("a/data.pkl", b"\x80\x02}"), ("a/byteorder", b"middle")]);
        assert!(e.contains("byteorder"), "{e}");
        let e = err(&[("a/data.pkl", b"\x80\x02}")]);
        assert!(e.contains("a/data.pkl") && e.contains("truncated"), "{e}");
    }
}
