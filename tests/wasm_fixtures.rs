//! The transformers fixtures through the wasm build, in a browser: the Rust
//! API on the CPU backend, and the JS API (`Recognizer`, files fetched from
//! scripts/serve_fixtures.py) on the CPU (1e-4) and WebGPU (2e-3).
//! Run with `make test-wasm` (see scripts/test_wasm.sh).
#![cfg(target_arch = "wasm32")]

#[path = "wasm_common/mod.rs"]
mod common;

use common::*;
use sewd::backend::cpu::Cpu;
use sewd::backend::Backend;
use sewd::config::SewdConfig;
use sewd::model::{Input, Options, SewdModel};
use sewd::tokenizer::CtcTokenizer;
use sewd::weights::WeightStore;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CPU_TOL: f32 = 1e-4;
const GPU_TOL: f32 = 2e-3;

async fn meta(case: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(&format!("/m/meta/{case}/meta.json")).await).unwrap()
}

async fn clips(meta: &serde_json::Value) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for f in meta["audio"].as_array().unwrap() {
        out.push(clip(f.as_str().unwrap()).await);
    }
    out
}

/// Every case, every output, through the Rust API compiled to wasm (padded batch included).
#[wasm_bindgen_test]
async fn rust_api_every_case_on_cpu() {
    for case in CASES {
        let meta = meta(case).await;
        let config_json = get_text(&format!("/m/rust/{case}/config.json")).await;
        let weights = if *case == "base_layer_sq3_c2p_separate" {
            WeightStore::from_pytorch(&get(&format!("/m/rust/{case}/pytorch_model.bin")).await, "pytorch_model.bin").unwrap()
        } else {
            WeightStore::from_safetensors(&get(&format!("/m/rust/{case}/model.safetensors")).await, "model.safetensors").unwrap()
        };
        let config = SewdConfig::from_json(&config_json, "config.json").unwrap();
        let model = SewdModel::load(&Cpu, config, &weights).unwrap_or_else(|e| panic!("{case}: {e}"));
        let clips: Vec<Vec<f32>> = clips(&meta)
            .await
            .into_iter()
            .map(|mut c| {
                sewd::audio::normalize(&mut c);
                c
            })
            .collect();
        let len = clips.iter().map(Vec::len).max().unwrap();
        let lengths: Vec<usize> = clips.iter().map(Vec::len).collect();
        let mut samples = vec![0.0f32; clips.len() * len];
        for (b, c) in clips.iter().enumerate() {
            samples[b * len..b * len + c.len()].copy_from_slice(c);
        }
        let padded = meta["padded"].as_bool().unwrap_or(false);
        let outputs = meta["outputs"].as_object().unwrap();
        let opts = Options { output_hidden_states: outputs.contains_key("hidden_states"), output_attentions: outputs.contains_key("attentions") };
        let input = Input { samples: &samples, batch: clips.len(), lengths: padded.then_some(&lengths[..]) };
        let out = model.forward(&Cpu, &input, opts).unwrap_or_else(|e| panic!("{case}: {e}"));
        for (name, file) in outputs {
            let want = npy(&format!("/m/npy/{case}/{}", file.as_str().unwrap())).await;
            let (shape, data) = match name.as_str() {
                "logits" => {
                    let t = Cpu.download(out.logits.as_ref().unwrap()).unwrap();
                    (t.shape, t.data)
                }
                "last_hidden_state" => {
                    let t = Cpu.download(&out.last_hidden_state).unwrap();
                    (t.shape, t.data)
                }
                "hidden_states" | "attentions" => {
                    let list = if name == "hidden_states" { &out.hidden_states } else { &out.attentions };
                    let mut shape = vec![list.len()];
                    let mut data = Vec::new();
                    for (i, t) in list.iter().enumerate() {
                        let t = Cpu.download(t).unwrap();
                        if i == 0 {
                            shape.extend(&t.shape);
                        }
                        data.extend(t.data);
                    }
                    (shape, data)
                }
                other => panic!("unknown output {other}"),
            };
            assert_close(&format!("rust/{case}/{name}"), &data, &want.data, &shape, &want.shape, CPU_TOL);
        }
    }
}

/// Every single-clip case through `Recognizer.load(url).forward(…)`, plus
/// `transcribe` / `classify` agreeing with the reference logits.
async fn recognizer_every_case(backend: &str, tol: f32) {
    for case in CASES.iter().filter(|c| **c != "ctc_padded_batch") {
        let meta = meta(case).await;
        let rec = load_case(backend, case, backend).await;
        assert_eq!(rec.backend(), backend, "{case}: the backend that runs");
        let samples = clips(&meta).await.remove(0);
        let outputs = meta["outputs"].as_object().unwrap();
        let opts = obj(&[
            ("hiddenStates", outputs.contains_key("hidden_states").into()),
            ("attentions", outputs.contains_key("attentions").into()),
        ]);
        let out = rec.forward(samples.clone(), 16_000, opts).await.unwrap_or_else(|e| panic!("{case}: {}", message(&e)));
        for (name, file) in outputs {
            let want = npy(&format!("/m/npy/{case}/{}", file.as_str().unwrap())).await;
            let (shape, data) = match name.as_str() {
                "logits" => tensor(&get_field(&out, "logits")),
                "last_hidden_state" => tensor(&get_field(&out, "lastHiddenState")),
                "hidden_states" => stacked(&get_field(&out, "hiddenStates")),
                "attentions" => stacked(&get_field(&out, "attentions")),
                other => panic!("unknown output {other}"),
            };
            assert_close(&format!("{backend}/{case}/{name}"), &data, &want.data, &shape, &want.shape, tol);
        }
        match rec.head().as_str() {
            "ctc" => {
                let logits = npy(&format!("/m/npy/{case}/logits.npy")).await;
                let vocab = *logits.shape.last().unwrap();
                let tok = CtcTokenizer::from_vocab_json(&get_text(&format!("/m/v/{case}/vocab.json")).await, "vocab.json").unwrap();
                let want = tok.decode(&CtcTokenizer::argmax(&logits.data, vocab));
                let got = rec.transcribe(samples.clone(), 16_000).await.unwrap_or_else(|e| panic!("{case}: {}", message(&e)));
                let text = get_field(&got, "text").as_string().unwrap();
                // Near-ties of random weights may flip an argmax on the GPU.
                let c = cer(&text, &want);
                assert!(if backend == "cpu" { text == want } else { c < 0.02 }, "{backend}/{case}: transcript {text:?} vs reference argmax {want:?} (CER {c})");
                let words = js_sys::Array::from(&get_field(&got, "words"));
                assert!(words.length() > 0);
            }
            "classifier" => {
                let logits = npy(&format!("/m/npy/{case}/logits.npy")).await;
                let best = logits.data.iter().enumerate().fold(0, |b, (i, v)| if *v > logits.data[b] { i } else { b });
                let got = rec.classify(samples.clone(), 16_000).await.unwrap_or_else(|e| panic!("{case}: {}", message(&e)));
                let label = get_field(&got, "label").as_string().unwrap();
                let config: serde_json::Value = serde_json::from_str(&get_text(&format!("/m/c/{case}/config.json")).await).unwrap();
                let want = config["id2label"][best.to_string()].as_str().map(String::from).unwrap_or(format!("LABEL_{best}"));
                assert_eq!(label, want, "{backend}/{case}: label");
                let scores = js_sys::Array::from(&get_field(&got, "scores"));
                let sum: f64 = scores.iter().map(|s| get_field(&s, "score").as_f64().unwrap()).sum();
                assert!((sum - 1.0).abs() < 1e-4, "scores sum to {sum}");
            }
            _ => {}
        }
    }
}

#[wasm_bindgen_test]
async fn recognizer_every_case_on_cpu() {
    recognizer_every_case("cpu", CPU_TOL).await;
}

/// Fails (does not skip) where the browser has no WebGPU adapter.
#[wasm_bindgen_test]
async fn recognizer_every_case_on_webgpu() {
    recognizer_every_case("webgpu", GPU_TOL).await;
}

/// Headless Chromium's only WebGPU adapter is SwiftShader, a software
/// fallback (`info.isFallbackAdapter`), about 30x slower than the wasm CPU
/// path on this model: "auto" takes the CPU there ("webgpu" still gets the
/// adapter, as the tests above show).
#[wasm_bindgen_test]
async fn auto_prefers_the_cpu_to_a_software_webgpu_adapter() {
    // First make sure the premise holds: there is an adapter, and it is a fallback.
    let gpu = js_sys::Reflect::get(&js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap(), &"gpu".into()).unwrap();
    let request = js_sys::Function::from(js_sys::Reflect::get(&gpu, &"requestAdapter".into()).unwrap());
    let adapter = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(request.call0(&gpu).unwrap())).await.unwrap();
    assert!(adapter.is_object(), "this browser offers no WebGPU adapter at all");
    let info = js_sys::Reflect::get(&adapter, &"info".into()).unwrap();
    assert_eq!(js_sys::Reflect::get(&info, &"isFallbackAdapter".into()).unwrap().as_bool(), Some(true), "the adapter is not a fallback");
    let rec = load(&url("/m/auto/ctc_group_both_shared"), obj(&[("cache", false.into())])).await.unwrap();
    assert_eq!(rec.backend(), "cpu");
    assert!(rec.fallback_reason().is_none());
}

/// A GPU failure mid-session moves the model to the CPU and the call still succeeds.
#[wasm_bindgen_test]
async fn gpu_loss_falls_back_to_cpu() {
    let samples = clip("speech_3s.wav").await;
    let cpu = load_case("fb", "ctc_group_both_shared", "cpu").await;
    let want = get_field(&cpu.transcribe(samples.clone(), 16_000).await.unwrap(), "text").as_string().unwrap();
    let rec = load_case("fb", "ctc_group_both_shared", "webgpu").await;
    assert_eq!(rec.backend(), "webgpu");
    rec.__simulate_gpu_loss_for_tests();
    let got = rec.transcribe(samples.clone(), 16_000).await.unwrap_or_else(|e| panic!("{}", message(&e)));
    assert_eq!(rec.backend(), "cpu", "the model should have moved to the CPU");
    assert!(rec.fallback_reason().unwrap().contains("lost"), "{:?}", rec.fallback_reason());
    assert_eq!(get_field(&got, "text").as_string().unwrap(), want);

    // And a stream started before keeps working on the CPU.
    let s = rec.stream(JsValue::UNDEFINED).unwrap();
    s.push(&samples, 16_000).unwrap();
    let r = s.finish().await.unwrap();
    assert!(!get_field(&r, "text").as_string().unwrap().is_empty());

    // Two calls in flight when the device goes: both fail on the GPU, the
    // first moves the model, and the second must not try to move it again.
    let rec = load_case("fb2", "ctc_group_both_shared", "webgpu").await;
    rec.__simulate_gpu_loss_for_tests();
    let (a, b) = join(rec.transcribe(samples.clone(), 16_000), rec.transcribe(samples.clone(), 16_000)).await;
    for r in [a, b] {
        let r = r.unwrap_or_else(|e| panic!("a concurrent call failed: {}", message(&e)));
        assert_eq!(get_field(&r, "text").as_string().unwrap(), want);
    }
    assert_eq!(rec.backend(), "cpu");
}

/// A call over this GPU's limits (the attention maps of a long clip, over
/// max_storage_buffer_binding_size) is refused with the limit named, and the
/// model stays on the GPU: the input was too large, the GPU did not fail.
#[wasm_bindgen_test]
async fn a_call_over_the_gpu_limits_keeps_the_gpu() {
    let rec = load_case("limit", "ctc_group_both_shared", "webgpu").await;
    let (max_binding, _) = sewd::backend::gpu::Gpu::new_async().await.unwrap().limits();
    // 2 heads x T x T floats just over the limit, at 640 samples per squeezed frame.
    let frames = (max_binding as f64 / 8.0).sqrt() as usize + 64;
    let n = frames * 640;
    assert!(n <= 24_000_000, "a binding limit of {max_binding} bytes needs {n} samples: pick another trigger");
    let noise: Vec<f32> = (0..n).map(|i| (i as f32 * 12.9898).sin() * 0.1).collect();
    let err = message(&rec.forward(noise, 16_000, obj(&[("attentions", true.into())])).await.unwrap_err());
    assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
    assert_eq!(rec.backend(), "webgpu", "a too-large input must not move the model to the CPU");
    assert!(rec.fallback_reason().is_none());
    let got = rec.transcribe(clip("speech_3s.wav").await, 16_000).await.unwrap_or_else(|e| panic!("{}", message(&e)));
    assert!(!get_field(&got, "text").as_string().unwrap().is_empty());
}

/// Attention maps of a 10-minute clip need more than wasm32's 4 GiB: the
/// call fails with a message (a failed allocation used to abort the module,
/// leaving the promise unsettled), and the model goes on working.
#[wasm_bindgen_test]
async fn running_out_of_memory_on_the_cpu_is_an_error() {
    let rec = load_case("oom", "ctc_group_both_shared", "cpu").await;
    // 2 heads x 16,000² floats per layer: 2 GB, twice over while gathered.
    let noise: Vec<f32> = (0..16_000 * 640).map(|i| (i as f32 * 12.9898).sin() * 0.1).collect();
    let err = message(&rec.forward(noise, 16_000, obj(&[("attentions", true.into())])).await.unwrap_err());
    assert!(err.contains("out of memory") && err.contains("attention"), "{err}");
    let got = rec.transcribe(clip("speech_3s.wav").await, 16_000).await.unwrap_or_else(|e| panic!("{}", message(&e)));
    assert!(!get_field(&got, "text").as_string().unwrap().is_empty());
}

/// Both futures, polled together (no executor crate in the wasm tests).
async fn join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}
