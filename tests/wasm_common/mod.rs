//! Shared support of the browser tests (tests/wasm_*.rs): the fixture server
//! (scripts/serve_fixtures.py), JS option objects, closeness checks.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Reflect};
use sewd::wasm::Recognizer;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Where scripts/serve_fixtures.py listens (set SEWD_FIXTURE_SERVER at build
/// time to move it). The tests fail when it is not running.
pub const SERVER: &str = match option_env!("SEWD_FIXTURE_SERVER") {
    Some(s) => s,
    None => "http://127.0.0.1:8765",
};

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

pub fn url(path: &str) -> String {
    format!("{SERVER}{path}")
}

fn window() -> web_sys::Window {
    web_sys::window().expect("the tests run in a browser window")
}

/// GET `path` from the fixture server; panics (fails the test) on any error.
pub async fn get(path: &str) -> Vec<u8> {
    let u = url(path);
    let resp = JsFuture::from(window().fetch_with_str(&u))
        .await
        .unwrap_or_else(|e| panic!("GET {u}: {e:?}. Is scripts/serve_fixtures.py running (make test-wasm starts it)?"));
    let resp: web_sys::Response = resp.dyn_into().unwrap();
    assert!(resp.ok(), "GET {u}: HTTP {}", resp.status());
    let buf = JsFuture::from(resp.array_buffer().unwrap()).await.unwrap();
    js_sys::Uint8Array::new(&buf).to_vec()
}

pub async fn get_text(path: &str) -> String {
    String::from_utf8(get(path).await).unwrap()
}

/// Requests the server has seen whose path starts with `prefix`.
pub async fn count(prefix: &str) -> u64 {
    count_query(&format!("prefix={}", js_sys::encode_uri_component(prefix))).await
}

/// Requests like `count`, only those made with `method` (GET or HEAD).
pub async fn count_method(prefix: &str, method: &str) -> u64 {
    count_query(&format!("prefix={}&method={method}", js_sys::encode_uri_component(prefix))).await
}

async fn count_query(query: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&get_text(&format!("/count?{query}")).await).unwrap();
    v["count"].as_u64().unwrap()
}

/// Toggles a server switch for `/m/{tag}/` (`flip`: the model behind
/// `/m/{tag}/flip/`; `outage`: every file there answers 503).
pub async fn toggle(switch: &str, tag: &str) {
    get_text(&format!("/{switch}?tag={tag}")).await;
}

/// A fixture clip as float samples.
pub async fn clip(name: &str) -> Vec<f32> {
    let bytes = get(&format!("/audio/{name}")).await;
    let a = sewd::audio::read_wav(&bytes, name).unwrap();
    assert_eq!(a.sample_rate, 16_000);
    a.samples
}

pub async fn npy(path: &str) -> sewd::npy::NpyArray {
    sewd::npy::from_bytes(&get(path).await).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A plain JS object from `(key, value)` pairs.
pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

pub fn get_field(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap()
}

/// The message of a rejected promise / thrown `Error`; panics if it is not an `Error`.
pub fn message(e: &JsValue) -> String {
    let err = e.dyn_ref::<js_sys::Error>().unwrap_or_else(|| panic!("expected a JS Error, got {e:?}"));
    String::from(err.message())
}

/// `onProgress` reports: (loaded, total, file, cached).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub loaded: f64,
    pub total: Option<f64>,
    pub file: String,
    pub cached: bool,
}

/// An `onProgress` callback that records its calls.
pub struct ProgressLog {
    pub reports: Rc<RefCell<Vec<Report>>>,
    pub callback: Closure<dyn FnMut(JsValue, JsValue, JsValue, JsValue)>,
}

impl ProgressLog {
    pub fn new() -> Self {
        let reports: Rc<RefCell<Vec<Report>>> = Rc::default();
        let sink = reports.clone();
        let callback = Closure::new(move |loaded: JsValue, total: JsValue, file: JsValue, cached: JsValue| {
            sink.borrow_mut().push(Report {
                loaded: loaded.as_f64().unwrap(),
                total: total.as_f64(),
                file: file.as_string().unwrap(),
                cached: cached.as_bool().unwrap(),
            });
        });
        ProgressLog { reports, callback }
    }

    pub fn js(&self) -> JsValue {
        self.callback.as_ref().clone()
    }

    /// Files reported, each once, in first-report order.
    pub fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.reports.borrow().iter() {
            if !out.contains(&r.file) {
                out.push(r.file.clone());
            }
        }
        out
    }
}

pub async fn load(model: &str, options: JsValue) -> Result<Recognizer, String> {
    Recognizer::load(JsValue::from(model), options).await.map_err(|e| message(&e))
}

/// Loads fixture `case` from `/m/{tag}/{case}/` on `backend`, bypassing the cache.
pub async fn load_case(tag: &str, case: &str, backend: &str) -> Recognizer {
    let opts = obj(&[("backend", backend.into()), ("cache", false.into())]);
    load(&url(&format!("/m/{tag}/{case}/")), opts).await.unwrap_or_else(|e| panic!("{case} on {backend}: {e}"))
}

#[path = "../common/close.rs"]
mod close;

/// [`close::assert_close`], logging the relative error to the console.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], got_shape: &[usize], want_shape: &[usize], tol: f32) -> f32 {
    let rel = close::assert_close(what, got, want, got_shape, want_shape, tol);
    web_sys::console::log_1(&format!("{what}: rel error {rel:.2e}").into());
    rel
}

/// A `{shape, data}` tensor from the JS API.
pub fn tensor(v: &JsValue) -> (Vec<usize>, Vec<f32>) {
    let shape: Vec<usize> = js_sys::Array::from(&get_field(v, "shape")).iter().map(|d| d.as_f64().unwrap() as usize).collect();
    let data = js_sys::Float32Array::from(get_field(v, "data")).to_vec();
    (shape, data)
}

/// Stacks a JS array of tensors into one `[n, ...]` tensor.
pub fn stacked(v: &JsValue) -> (Vec<usize>, Vec<f32>) {
    let mut shape = Vec::new();
    let mut data = Vec::new();
    let arr = js_sys::Array::from(v);
    for (i, t) in arr.iter().enumerate() {
        let (s, d) = tensor(&t);
        if i == 0 {
            shape.push(arr.length() as usize);
            shape.extend(s);
        }
        data.extend(d);
    }
    (shape, data)
}

pub fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (x != y) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub fn cer(got: &str, want: &str) -> f64 {
    let g: Vec<char> = got.chars().collect();
    let w: Vec<char> = want.chars().collect();
    levenshtein(&g, &w) as f64 / w.len().max(1) as f64
}
