//! Shared test support: fixture loading and closeness checks that name the worst element.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sewd::audio;
use sewd::backend::Backend;
use sewd::model::{loss, Input, Options, SewdModel};
use sewd::pipeline::ModelFiles;
use sewd::config::SewdConfig;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

pub fn read_npy(path: &Path) -> sewd::npy::NpyArray {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sewd::npy::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

mod close;

/// [`close::assert_close`], printing the relative error.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], got_shape: &[usize], want_shape: &[usize], tol: f32) {
    let rel = close::assert_close(what, got, want, got_shape, want_shape, tol);
    eprintln!("{what}: rel error {rel:.2e}");
}

/// Runs one fixture case on `backend` and checks every saved output within `tol`.
pub fn check_case<B: Backend>(backend: &B, case: &str, tol: f32) {
    let dir = fixtures().join(case);
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let files = ModelFiles::read_dir(&dir).unwrap_or_else(|e| panic!("{case}: {e}"));
    let config = SewdConfig::from_json(&files.config_json, "config.json").unwrap();
    let model = SewdModel::load(backend, config, &files.weights).unwrap_or_else(|e| panic!("{case}: {e}"));

    let clips: Vec<Vec<f32>> = meta["audio"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let a = audio::read_wav_file(&fixtures().join(f.as_str().unwrap())).unwrap();
            assert_eq!(a.sample_rate, 16_000);
            let mut s = a.samples;
            audio::normalize(&mut s);
            s
        })
        .collect();
    let len = clips.iter().map(Vec::len).max().unwrap();
    let lengths: Vec<usize> = clips.iter().map(Vec::len).collect();
    let mut samples = vec![0.0f32; clips.len() * len];
    for (b, c) in clips.iter().enumerate() {
        samples[b * len..b * len + c.len()].copy_from_slice(c);
    }
    let padded = meta["padded"].as_bool().unwrap_or(false);
    let input = Input { samples: &samples, batch: clips.len(), lengths: padded.then_some(&lengths[..]) };
    let outputs = meta["outputs"].as_object().unwrap();
    let opts = Options {
        output_hidden_states: outputs.contains_key("hidden_states"),
        output_attentions: outputs.contains_key("attentions"),
    };
    let out = model.forward(backend, &input, opts).unwrap_or_else(|e| panic!("{case}: {e}"));

    let mut logits_host = None;
    for (name, file) in outputs {
        let want = read_npy(&dir.join(file.as_str().unwrap()));
        let (shape, data): (Vec<usize>, Vec<f32>) = match name.as_str() {
            "logits" => {
                let t = backend.download(out.logits.as_ref().expect("logits")).unwrap();
                logits_host = Some(t.clone());
                (t.shape, t.data)
            }
            "last_hidden_state" => {
                let t = backend.download(&out.last_hidden_state).unwrap();
                (t.shape, t.data)
            }
            "hidden_states" | "attentions" => {
                let list = if name == "hidden_states" { &out.hidden_states } else { &out.attentions };
                let mut shape = vec![list.len()];
                let mut data = Vec::new();
                for (i, t) in list.iter().enumerate() {
                    let t = backend.download(t).unwrap();
                    if i == 0 {
                        shape.extend(&t.shape);
                    }
                    data.extend(t.data);
                }
                (shape, data)
            }
            other => panic!("unknown output {other}"),
        };
        assert_close(&format!("{case}/{name}"), &data, &want.data, &shape, &want.shape, tol);
    }

    if let (Some(want_loss), Some(logits)) = (meta["loss"].as_f64(), logits_host) {
        let got = match meta["class"].as_str().unwrap() {
            "SEWDForCTC" => {
                let labels: Vec<Vec<u32>> = match &meta["labels"] {
                    serde_json::Value::Array(a) if a.first().is_some_and(|x| x.is_array()) => a
                        .iter()
                        .map(|row| row.as_array().unwrap().iter().filter_map(|v| v.as_i64()).filter(|&v| v >= 0).map(|v| v as u32).collect())
                        .collect(),
                    serde_json::Value::Array(a) => vec![a.iter().filter_map(|v| v.as_i64()).filter(|&v| v >= 0).map(|v| v as u32).collect()],
                    other => panic!("labels {other}"),
                };
                let (b, t, v) = (logits.shape[0], logits.shape[1], logits.shape[2]);
                assert_eq!(labels.len(), b, "{case}: one label row per batch item");
                loss::ctc_loss(&logits.data, t, v, &out.frame_lengths, &labels, &model.config)
            }
            _ => {
                let label = meta["labels"].as_u64().unwrap() as usize;
                loss::cross_entropy(&logits.data, logits.shape[1], &[label])
            }
        };
        let rel = ((got - want_loss) / want_loss).abs();
        assert!(rel < tol as f64 * 10.0, "{case}/loss: got {got}, want {want_loss} (rel {rel:.2e})");
        eprintln!("{case}/loss: rel error {rel:.2e}");
    }
}

pub const CASES: &[&str] = &[
    "ctc_group_both_shared",
    "base_layer_sq3_c2p_separate",
    "ctc_p2c_nobuckets",
    "base_attentions_short",
    "cls_weighted",
    "cls_mean",
    "ctc_padded_batch",
    "base_norel",
    "ctc_sq1",
    "ctc_int8",
];
