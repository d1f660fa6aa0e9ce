//! The JS API in a dedicated Worker (no `window`): fetch and the Cache API
//! come from the WorkerGlobalScope. Needs scripts/serve_fixtures.py (make test-wasm).
#![cfg(target_arch = "wasm32")]

use js_sys::Reflect;
use sewd::wasm::Recognizer;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const SERVER: &str = match option_env!("SEWD_FIXTURE_SERVER") {
    Some(s) => s,
    None => "http://127.0.0.1:8765",
};

async fn get(path: &str) -> Vec<u8> {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().dyn_into().expect("a worker scope");
    let resp: web_sys::Response = JsFuture::from(scope.fetch_with_str(&format!("{SERVER}{path}"))).await.unwrap().dyn_into().unwrap();
    assert!(resp.ok(), "{path}: HTTP {}", resp.status());
    js_sys::Uint8Array::new(&JsFuture::from(resp.array_buffer().unwrap()).await.unwrap()).to_vec()
}

/// Requests made with `method` (GET or HEAD) whose path starts with `prefix`.
async fn count(prefix: &str, method: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&get(&format!("/count?prefix={prefix}&method={method}")).await).unwrap();
    v["count"].as_u64().unwrap()
}

#[wasm_bindgen_test]
async fn load_transcribe_and_cache_in_a_worker() {
    assert!(web_sys::window().is_none(), "this test must run without a window");
    let opts = js_sys::Object::new();
    Reflect::set(&opts, &"backend".into(), &"cpu".into()).unwrap();
    let model = format!("{SERVER}/m/worker/ctc_group_both_shared/");
    let rec = Recognizer::load(model.clone().into(), opts.clone().into()).await.unwrap_or_else(|e| panic!("{e:?}"));
    let wav = sewd::audio::read_wav(&get("/audio/speech_3s.wav").await, "speech_3s.wav").unwrap();
    let r = rec.transcribe(wav.samples, 16_000).await.unwrap();
    assert!(!Reflect::get(&r, &"text".into()).unwrap().as_string().unwrap().is_empty());
    let (gets, heads) = (count("/m/worker/", "GET").await, count("/m/worker/", "HEAD").await);
    Recognizer::load(model.into(), JsValue::from(opts)).await.unwrap();
    assert_eq!(count("/m/worker/", "GET").await, gets, "the second load in a worker should come from the cache");
    // Revalidated from the worker scope too: one HEAD per cached file.
    assert!(count("/m/worker/", "HEAD").await > heads, "the cached files were not revalidated");
}
