//! The `sewd` command line: every sub-command on fixture models, and every
//! kind of bad input giving a one-line error and a non-zero exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sewd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sewd")).args(args).output().expect("run sewd")
}

fn model(case: &str) -> String {
    common::fixtures().join(case).display().to_string()
}

fn speech() -> String {
    common::fixtures().join("speech_3s.wav").display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sewd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A float32 mono WAV.
fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 4).to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// Fails unless the command failed with exactly one stderr line containing every `needle`.
fn assert_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one-line error expected, got: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "error {stderr:?} should mention {n:?}");
    }
}

#[test]
fn forward_writes_the_reference_logits() {
    let out_path = scratch("logits.npy");
    let out = sewd(&["forward", "--model", &model("ctc_group_both_shared"), "--audio", &common::fixtures().join("speech_16s.wav").display().to_string(), "--output", "logits", "--out", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = common::read_npy(&out_path);
    let want = common::read_npy(&common::fixtures().join("ctc_group_both_shared/logits.npy"));
    common::assert_close("cli logits", &got.data, &want.data, &got.shape, &want.shape, 1e-4);
}

#[test]
fn forward_last_hidden_state_of_a_base_model() {
    let out_path = scratch("hidden.npy");
    let out = sewd(&["forward", "--model", &model("base_layer_sq3_c2p_separate"), "--audio", &common::fixtures().join("speech_16s.wav").display().to_string(), "--output", "last_hidden_state", "--out", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = common::read_npy(&out_path);
    let want = common::read_npy(&common::fixtures().join("base_layer_sq3_c2p_separate/last_hidden_state.npy"));
    common::assert_close("cli hidden", &got.data, &want.data, &got.shape, &want.shape, 1e-4);
    // A base model has no logits.
    let out = sewd(&["forward", "--model", &model("base_layer_sq3_c2p_separate"), "--audio", &speech(), "--output", "logits", "--out", out_path.to_str().unwrap()]);
    assert_error(&out, &["logits"]);
}

#[test]
fn transcribe_jsonl_has_the_documented_fields() {
    let out = sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), "--format", "jsonl", &speech(), &speech()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["file"].as_str().unwrap().ends_with("speech_3s.wav"));
        assert!(v["text"].is_string());
        assert!((v["seconds"].as_f64().unwrap() - 3.0).abs() < 0.01);
        for w in v["words"].as_array().unwrap() {
            let (s, e) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
            assert!(w["word"].is_string() && 0.0 <= s && s < e && e <= 3.01, "{w}");
        }
    }
}

#[test]
fn transcribe_stream_is_the_offline_text_when_one_window_covers_the_clip() {
    let m = model("ctc_group_both_shared");
    let offline = sewd(&["transcribe", "--model", &m, &speech()]);
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    // A right context past the clip's end: the only window is the last, the whole clip.
    let whole = sewd(&["transcribe", "--model", &m, "--stream", "--windows", "hop=1,right=30", &speech()]);
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    assert_eq!(whole.stdout, offline.stdout);
    // The 3 s clip is one sample short of the default 3 s minimum window: again one window.
    let default = sewd(&["transcribe", "--model", &m, "--stream", &speech()]);
    assert_eq!(default.stdout, offline.stdout, "{}", String::from_utf8_lossy(&default.stderr));
    // Without the minimum: windows from 1.5 s on and their seams, where a random-weight
    // model (whose argmaxes flip with any change of context) writes a different text.
    let streamed = sewd(&["transcribe", "--model", &m, "--stream", "--format", "jsonl", "--windows", "min=0", &speech()]);
    assert!(streamed.status.success(), "{}", String::from_utf8_lossy(&streamed.stderr));
    let v: serde_json::Value = serde_json::from_slice(&streamed.stdout).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(!text.is_empty() && !v["words"].as_array().unwrap().is_empty(), "{v}");
    assert_ne!(text, String::from_utf8_lossy(&offline.stdout).trim(), "the stream ran one window only");

    let bad = sewd(&["transcribe", "--model", &m, "--stream", "--windows", "left=4,width=2", &speech()]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("\"width\": not a stream option"));
    let bad = sewd(&["transcribe", "--model", &m, "--stream", "--windows", "silence=20", &speech()]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("silence=20: must be between 0 and 10 seconds"));
    let bad = sewd(&["transcribe", "--model", &m, "--windows", "hop=1", &speech()]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--stream"), "--windows needs --stream");
}

#[test]
fn classify_prints_label_and_score() {
    let out = sewd(&["classify", "--model", &model("cls_weighted"), &speech()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = text.trim().split('\t').collect();
    assert_eq!(fields.len(), 3, "{text}");
    // The reference logits say which label wins.
    let logits = common::read_npy(&common::fixtures().join("cls_weighted/logits.npy")).data;
    let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::fixtures().join("cls_weighted/config.json")).unwrap()).unwrap();
    assert_eq!(fields[1], config["id2label"][best.to_string()].as_str().unwrap());
    let score: f32 = fields[2].parse().unwrap();
    assert!(score > 0.0 && score <= 1.0);
}

#[test]
fn bench_ends_with_a_json_line() {
    let out = sewd(&["bench", "--model", &model("ctc_group_both_shared"), "--audio", &speech(), "--runs", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert!((v["audio_s"].as_f64().unwrap() - 3.0).abs() < 0.01);
    assert!(v["rtf"].as_f64().unwrap() > 0.0);
}

/// `--profile`: the usual line first, unchanged, then the per-kernel GPU times.
#[test]
fn bench_gpu_profile_adds_a_kernel_table_line() {
    let out = sewd(&["bench", "--backend", "gpu", "--profile", "--model", &model("ctc_group_both_shared"), "--audio", &speech(), "--runs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("GPU kernel profile"), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let mut keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["audio_s", "backend", "median_ms", "record_ms", "rtf"]);
    assert_eq!(first["backend"], "gpu");
    let (median, record) = (first["median_ms"].as_f64().unwrap(), first["record_ms"].as_f64().unwrap());
    assert!(median > 0.0 && record > 0.0 && record <= median, "{first}");

    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    let rows = v["profile"].as_array().unwrap();
    assert!(!rows.is_empty(), "{v}");
    let mut sum = 0.0;
    for r in rows {
        assert!(!r["kernel"].as_str().unwrap().is_empty(), "{r}");
        assert!(r["dispatches"].as_u64().unwrap() > 0, "{r}");
        let ms = r["ms"].as_f64().unwrap();
        assert!(ms >= 0.0, "{r}");
        sum += ms;
    }
    assert!(rows.iter().any(|r| r["kernel"].as_str().is_some_and(|k| k.starts_with("matmul::main") && k.ends_with("[linear]"))), "{v}");
    let gpu_ms = v["gpu_ms"].as_f64().unwrap();
    assert!((gpu_ms - sum).abs() <= 1e-3 * rows.len() as f64 + 1e-6 * sum, "gpu_ms {gpu_ms} vs sum {sum}");
    assert!(v["profiled_pass_ms"].as_f64().unwrap() > 0.0);
    assert!(v["adapter"].is_string());
}

#[test]
fn bench_profile_needs_the_gpu_backend() {
    let out = sewd(&["bench", "--profile", "--model", &model("ctc_group_both_shared"), "--audio", &speech(), "--runs", "1"]);
    assert_error(&out, &["--profile", "--backend gpu"]);
}

#[test]
fn missing_audio_file() {
    let out = sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), "/nonexistent/clip.wav"]);
    assert_error(&out, &["/nonexistent/clip.wav"]);
}

#[test]
fn not_a_wav() {
    let path = scratch("notes.wav");
    std::fs::write(&path, b"these are not audio samples, just text").unwrap();
    let out = sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), path.to_str().unwrap()]);
    assert_error(&out, &["notes.wav", "not a WAV"]);
}

#[test]
fn empty_and_one_sample_audio() {
    let empty = scratch("empty.wav");
    write_wav(&empty, 16_000, &[]);
    assert_error(&sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), empty.to_str().unwrap()]), &["empty"]);
    let one = scratch("one.wav");
    write_wav(&one, 16_000, &[0.5]);
    assert_error(&sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), one.to_str().unwrap()]), &["one sample"]);
}

#[test]
fn audio_shorter_than_the_receptive_field() {
    let short = scratch("short.wav");
    write_wav(&short, 16_000, &[0.1, -0.2, 0.3, 0.05, -0.1, 0.2, 0.0, 0.1]);
    assert_error(&sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), short.to_str().unwrap()]), &["too short", "samples"]);
}

#[test]
fn nan_samples() {
    let path = scratch("nan.wav");
    let mut samples = vec![0.1f32; 8000];
    samples[1234] = f32::NAN;
    write_wav(&path, 16_000, &samples);
    assert_error(&sewd(&["transcribe", "--model", &model("ctc_group_both_shared"), path.to_str().unwrap()]), &["1234", "NaN"]);
}

#[test]
fn model_dir_without_weights() {
    let dir = scratch("no-weights");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(common::fixtures().join("ctc_group_both_shared/config.json"), dir.join("config.json")).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), &speech()]);
    assert_error(&out, &["model.safetensors", "pytorch_model.bin"]);
    let out = sewd(&["transcribe", "--model", "/nonexistent/model", &speech()]);
    assert_error(&out, &["/nonexistent/model"]);
}

#[test]
fn truncated_weights_name_the_file() {
    let dir = scratch("truncated");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::fixtures().join("ctc_group_both_shared");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), &speech()]);
    assert_error(&out, &["model.safetensors"]);
}

#[test]
fn bad_config_names_the_field() {
    let dir = scratch("bad-config");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::fixtures().join("ctc_group_both_shared");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["hidden_act"] = "swiglu".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), &speech()]);
    assert_error(&out, &["config.json", "hidden_act", "swiglu"]);
}

/// Quantized weights read as plain floats would give a wrong answer: an
/// unsupported scheme names its field, and scales without a declared scheme
/// name the tensor.
#[test]
fn quantized_weights_need_a_supported_quantization_config() {
    let src = common::fixtures().join("ctc_int8");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let with = |name: &str, config: &serde_json::Value| {
        let dir = scratch(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
        sewd(&["forward", "--model", dir.to_str().unwrap(), "--audio", &speech(), "--output", "logits", "--out", dir.join("l.npy").to_str().unwrap()])
    };
    let mut gptq = config.clone();
    gptq["quantization_config"]["quant_method"] = "gptq".into();
    assert_error(&with("quant-gptq", &gptq), &["config.json", "quantization_config.quant_method", "gptq"]);
    let mut w8a8 = config.clone();
    w8a8["quantization_config"]["config_groups"]["attention"]["input_activations"] = serde_json::json!({"num_bits": 8, "type": "int"});
    assert_error(&with("quant-w8a8", &w8a8), &["config_groups.attention.input_activations", "activation quantization"]);
    let mut undeclared = config;
    undeclared.as_object_mut().unwrap().remove("quantization_config");
    assert_error(&with("quant-undeclared", &undeclared), &["model.safetensors", "weight_scale", "no quantization_config"]);
}

#[test]
fn an_unreachable_model_rate_names_preprocessor_config() {
    let dir = scratch("fast-rate");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::fixtures().join("ctc_group_both_shared");
    for f in ["config.json", "model.safetensors", "vocab.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("preprocessor_config.json"), r#"{"sampling_rate": 2000000}"#).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), &speech()]);
    assert_error(&out, &["16000 Hz", "2000000 Hz", "preprocessor_config.json", "sampling_rate"]);
}

/// The bundled English model (it emits blanks and word breaks, which the
/// fixtures' random ones need not), its transcript of a clip, and a scratch
/// copy of its `files` to alter: `(copy, clip, reference stdout)`.
fn bundled_copy(name: &str, files: &[&str]) -> (PathBuf, String, Vec<u8>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("models/sewd-demo-en");
    let clip = root.join("tests/fixtures/clips/en_door.wav").display().to_string();
    let reference = sewd(&["transcribe", "--model", src.to_str().unwrap(), &clip]);
    assert!(reference.status.success() && reference.stdout.contains(&b' '));
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    (dir, clip, reference.stdout)
}

/// A checkpoint fine-tuned with `[PAD]`/`[UNK]` names them in tokenizer_config.json
/// (as a string or an AddedToken object); its transcript must not show them.
#[test]
fn special_tokens_come_from_tokenizer_config() {
    let (dir, clip, reference) = bundled_copy("bracket-tokens", &["config.json", "model.safetensors", "preprocessor_config.json"]);
    let clip = clip.as_str();
    let vocab = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sewd-demo-en/vocab.json")).unwrap();
    std::fs::write(dir.join("vocab.json"), vocab.replace("<pad>", "[PAD]").replace("<unk>", "[UNK]").replace("\"|\"", "\"#\"")).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r##"{"pad_token": "[PAD]", "unk_token": {"content": "[UNK]", "special": true}, "word_delimiter_token": "#"}"##,
    )
    .unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), clip]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&reference));

    std::fs::write(dir.join("tokenizer_config.json"), r#"{"pad_token": 7}"#).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), clip]);
    assert_error(&out, &["tokenizer_config.json", "pad_token"]);
}

/// Tokens past the model's outputs are never emitted, so a vocab longer than
/// `vocab_size` loads (as in transformers); a blank past them is an error.
#[test]
fn vocab_longer_than_the_model_outputs() {
    let files = ["config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json", "vocab.json"];
    let (dir, clip, reference) = bundled_copy("long-vocab", &files);
    let clip = clip.as_str();
    let vocab = std::fs::read_to_string(dir.join("vocab.json")).unwrap();
    let longer = vocab.trim_end().trim_end_matches('}').to_string() + r#", "<extra_a>": 32, "<extra_b>": 33}"#;
    std::fs::write(dir.join("vocab.json"), &longer).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), clip]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, reference);

    std::fs::write(dir.join("tokenizer_config.json"), r#"{"pad_token": "<extra_b>"}"#).unwrap();
    let out = sewd(&["transcribe", "--model", dir.to_str().unwrap(), clip]);
    assert_error(&out, &["vocab.json", "blank", "33", "vocab_size 32"]);
}

#[test]
fn classify_with_a_ctc_model_is_refused() {
    let out = sewd(&["classify", "--model", &model("ctc_group_both_shared"), &speech()]);
    assert_error(&out, &["classification"]);
}

/// A model that cannot transcribe is the model's fault: the error names the
/// model directory, not the audio file, and comes before any audio is read.
#[test]
fn transcribe_with_a_classifier_names_the_model() {
    let dir = model("cls_mean");
    let out = sewd(&["transcribe", "--model", &dir, "/nonexistent.wav"]);
    assert_error(&out, &[&dir, "CTC"]);
}

/// bench names the audio file its input errors come from, as the other commands do.
#[test]
fn bench_errors_name_the_audio_file() {
    let path = scratch("one-sample.wav");
    write_wav(&path, 16_000, &[0.5]);
    let out = sewd(&["bench", "--model", &model("ctc_group_both_shared"), "--audio", path.to_str().unwrap()]);
    assert_error(&out, &[path.to_str().unwrap(), "one sample"]);
}

#[test]
fn gpu_backend_transcribes_like_the_cpu() {
    let args = |backend: &'static str| -> Vec<String> {
        vec!["transcribe".into(), "--backend".into(), backend.into(), "--model".into(), model("ctc_group_both_shared"), common::fixtures().join("speech_16s.wav").display().to_string()]
    };
    let run = |backend| {
        let a = args(backend);
        let out = sewd(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let cpu = run("cpu");
    assert!(!cpu.trim().is_empty());
    assert_eq!(run("gpu"), cpu);
}

/// Without `--model` the models compiled into the binary answer, wherever it runs from
/// (here from a directory with no `models/` in it).
#[test]
fn classify_without_model_uses_the_embedded_keyword_spotter() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clips/kws_yes.wav");
    let out = Command::new(env!("CARGO_BIN_EXE_sewd"))
        .args(["classify", clip.to_str().unwrap()])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run sewd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split('\t').collect();
    assert_eq!(fields.get(1), Some(&"yes"), "{line}");
}
