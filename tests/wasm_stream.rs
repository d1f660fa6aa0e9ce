//! `rec.stream()` in a browser: callbacks, final transcript, agreement with
//! the Rust `StreamSession` and with offline transcription, bad pushes.
//! Needs scripts/serve_fixtures.py (make test-wasm).
#![cfg(target_arch = "wasm32")]

#[path = "wasm_common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use sewd::backend::cpu::Cpu;
use sewd::pipeline::{ModelFiles, Pipeline};
use sewd::stream::{pipeline_logits, StreamOptions, StreamSession};
use sewd::weights::WeightStore;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[derive(Default)]
struct Events {
    partials: Vec<String>,
    finals: Vec<(String, Vec<(String, f64, f64)>)>,
}

struct Callbacks {
    events: Rc<RefCell<Events>>,
    _partial: Closure<dyn FnMut(JsValue)>,
    _final: Closure<dyn FnMut(JsValue, JsValue)>,
    options: JsValue,
}

fn callbacks(extra: &[(&str, JsValue)]) -> Callbacks {
    let events: Rc<RefCell<Events>> = Rc::default();
    let e = events.clone();
    let partial = Closure::new(move |t: JsValue| e.borrow_mut().partials.push(t.as_string().unwrap()));
    let e = events.clone();
    let fin = Closure::new(move |t: JsValue, words: JsValue| {
        let words = js_sys::Array::from(&words)
            .iter()
            .map(|w| (get_field(&w, "word").as_string().unwrap(), get_field(&w, "start").as_f64().unwrap(), get_field(&w, "end").as_f64().unwrap()))
            .collect();
        e.borrow_mut().finals.push((t.as_string().unwrap(), words));
    });
    let mut pairs: Vec<(&str, JsValue)> = vec![("onPartial", partial.as_ref().clone()), ("onFinal", fin.as_ref().clone())];
    pairs.extend(extra.iter().cloned());
    Callbacks { events, _partial: partial, _final: fin, options: obj(&pairs) }
}

async fn cpu_pipeline(case: &str) -> Pipeline<Cpu> {
    let files = ModelFiles {
        config_json: get_text(&format!("/m/p/{case}/config.json")).await,
        weights: WeightStore::from_safetensors(&get(&format!("/m/p/{case}/model.safetensors")).await, "model.safetensors").unwrap(),
        vocab_json: Some(get_text(&format!("/m/p/{case}/vocab.json")).await),
        preprocessor_json: Some(get_text(&format!("/m/p/{case}/preprocessor_config.json")).await),
        tokenizer_config_json: None,
    };
    Pipeline::new(Cpu, &files).unwrap()
}

async fn stream_clip(backend: &str, input: &[f32], rate: u32) -> (String, Vec<(String, f64, f64)>, Callbacks) {
    let rec = load_case(&format!("s-{backend}"), "ctc_group_both_shared", backend).await;
    let cb = callbacks(&[]);
    let s = rec.stream(cb.options.clone()).unwrap();
    for chunk in input.chunks(1234) {
        s.push(chunk, rate).unwrap();
    }
    let r = s.finish().await.unwrap_or_else(|e| panic!("{}", message(&e)));
    assert!(s.committed() > 16.0 && s.received() > 16.0, "committed {} of {}", s.committed(), s.received());
    let text = get_field(&r, "text").as_string().unwrap();
    let words: Vec<(String, f64, f64)> = js_sys::Array::from(&get_field(&r, "words"))
        .iter()
        .map(|w| (get_field(&w, "word").as_string().unwrap(), get_field(&w, "start").as_f64().unwrap(), get_field(&w, "end").as_f64().unwrap()))
        .collect();
    (text, words, cb)
}

#[wasm_bindgen_test]
async fn stream_on_cpu_matches_the_rust_session_and_is_near_offline() {
    let a = clip("speech_16s.wav").await;
    let input = sewd::audio::resample(&a, 16_000, 44_100).unwrap();
    let (text, words, cb) = stream_clip("cpu", &input, 44_100).await;

    // The JS stream is the Rust StreamSession plus callbacks: same text.
    let p = cpu_pipeline("ctc_group_both_shared").await;
    let mut session = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let mut want = Vec::new();
    for chunk in input.chunks(1234) {
        for u in session.push(chunk, 44_100, pipeline_logits(&p)).unwrap() {
            want.extend(u.final_words);
        }
    }
    for u in session.finish(pipeline_logits(&p)).unwrap() {
        want.extend(u.final_words);
    }
    let want_text = want.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ");
    assert_eq!(text, want_text);

    // Callbacks: finals concatenate to the result, with absolute, ordered times.
    let ev = cb.events.borrow();
    assert!(ev.partials.len() > 20, "{} partials", ev.partials.len());
    let joined: Vec<String> = ev.finals.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(joined.join(" "), text);
    let all: Vec<(String, f64, f64)> = ev.finals.iter().flat_map(|(_, w)| w.clone()).collect();
    assert_eq!(all, words);
    assert!(words.windows(2).all(|w| w[0].1 <= w[1].1) && words.last().unwrap().2 > 15.0, "{words:?}");

    let rec = load_case("s-off", "ctc_group_both_shared", "cpu").await;
    let offline = get_field(&rec.transcribe(a, 16_000).await.unwrap(), "text").as_string().unwrap();
    let c = cer(&text, &offline);
    web_sys::console::log_1(&format!("stream vs offline (random-weight fixture): CER {:.1}%", c * 100.0).into());
    assert!(c < 0.35, "CER {c}");
}

#[wasm_bindgen_test]
async fn stream_on_webgpu() {
    let a = clip("speech_16s.wav").await;
    let (gpu, _, _) = stream_clip("webgpu", &a, 16_000).await;
    let (cpu, _, _) = stream_clip("cpu", &a, 16_000).await;
    let c = cer(&gpu, &cpu);
    assert!(c < 0.05, "WebGPU stream vs CPU stream: CER {c}\n{gpu}\n{cpu}");
}

#[wasm_bindgen_test]
async fn stream_options_and_bad_pushes() {
    let rec = load_case("s-bad", "ctc_group_both_shared", "cpu").await;
    let e = rec.stream(obj(&[("hop", "fast".into())])).err().map(|e| message(&e)).unwrap();
    assert!(e.contains("hop"), "{e}");
    let e = rec.stream(obj(&[("onFinal", 1.into())])).err().map(|e| message(&e)).unwrap();
    assert!(e.contains("onFinal"), "{e}");

    let s = rec.stream(obj(&[("hop", 0.25.into()), ("leftContext", 2.into()), ("rightContext", 0.5.into())])).unwrap();
    s.push(&[0.1; 4410], 44_100).unwrap();
    let e = message(&s.push(&[0.1; 100], 48_000).unwrap_err());
    assert!(e.contains("44100") && e.contains("48000"), "{e}");
    let e = message(&s.push(&[0.0, f32::INFINITY], 44_100).unwrap_err());
    assert!(e.contains("sample 1 is inf"), "{e}");
    let r = s.finish().await.unwrap();
    assert!(get_field(&r, "text").is_string());
    let e = message(&s.push(&[0.1; 10], 44_100).unwrap_err());
    assert!(e.contains("after finish"), "{e}");

    // A classifier has no stream.
    let c = load_case("s-bad", "cls_mean", "cpu").await;
    assert!(message(&c.stream(JsValue::UNDEFINED).err().unwrap()).contains("vocab.json"));
}
