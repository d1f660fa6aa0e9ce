//! The JavaScript API (npm package `sewd`), built with wasm-bindgen.
//!
//! ```js
//! import init, { Recognizer } from "sewd";
//! await init();
//! const rec = await Recognizer.load("asapp/sew-d-tiny-100k-ft-ls100h", { backend: "auto", onProgress });
//! rec.backend;                                      // "webgpu" | "cpu"
//! const { text, words } = await rec.transcribe(samples, sampleRate);
//! const s = rec.stream({ onPartial, onFinal });
//! s.push(chunk, sampleRate); …; const all = await s.finish();
//! const { label, scores } = await classifier.classify(samples, sampleRate);
//! ```
//!
//! Every failure rejects (or throws) a JS `Error` whose message names what
//! failed and where (URL, file, tensor, option). The model runs on the
//! calling thread: on the CPU a call blocks it for the length of the forward
//! pass, so use a Worker for long audio in an interactive page. The `threads`
//! build (`sewd/threads`) spreads that pass over a pool of Web Workers
//! started by `initThreadPool(n)`, and must be called from a Worker.

mod fetch;
mod stream;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::audio::Audio;
use crate::backend::cpu::Cpu;
use crate::backend::gpu::Gpu;
use crate::backend::{Backend, BackendError};
use crate::model::{Head, ModelError, Options};
use crate::pipeline::{ModelFiles, Pipeline};
use crate::tokenizer::CtcTokenizer;
use crate::weights::{TensorData, WeightStore, PYTORCH_FILE, SAFETENSORS_FILE};

use fetch::Fetched;
pub use fetch::{Location, CACHE_NAME, DEFAULT_ENDPOINT};
pub use stream::Stream;
/// `initThreadPool(n)` in JS (the `threads` build only): starts n Web Workers for
/// the CPU backend. Call it once after `init()`, in a Worker: rayon blocks the
/// calling thread while the pool works, which a page's main thread may not do.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// What this module was built with, `wasmFeatures()` in JS. The package holds each module
/// twice: `init()` loads the one built with relaxed SIMD (fused multiply-adds in the CPU
/// backend's matrix products: the pass about 1.15x as fast) where the engine compiles it, else
/// the plain one.
#[wasm_bindgen(js_name = wasmFeatures, unchecked_return_type = "WasmFeatures")]
pub fn wasm_features() -> JsValue {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Features {
        threads: bool,
        relaxed_simd: bool,
    }
    let features = Features { threads: cfg!(feature = "threads"), relaxed_simd: cfg!(target_feature = "relaxed-simd") };
    serde_wasm_bindgen::to_value(&features).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Which backend to run on. "auto": WebGPU when a GPU adapter exists, else the CPU (also when
 *  WebGPU offers only a software fallback adapter such as SwiftShader, which is slower). */
export type BackendChoice = "auto" | "webgpu" | "cpu";

/** How the loaded module was built (`wasmFeatures()`): `threads` for `sewd/threads`,
 *  `relaxedSimd` for the module `init()` picks where the engine has relaxed SIMD. */
export interface WasmFeatures {
  threads: boolean;
  relaxedSimd: boolean;
}

export interface LoadOptions {
  /** Default "auto". "webgpu" rejects when WebGPU is unavailable. */
  backend?: BackendChoice;
  /** Download progress per file: bytes so far, total (Content-Length; undefined
   * when unknown), the file name, and whether it came from the cache. */
  onProgress?: (loaded: number, total: number | undefined, file: string, cached: boolean) => void;
  /** Hub endpoint for hub ids (default "https://huggingface.co"): files are
   * `${endpoint}/${id}/resolve/main/${file}`. */
  endpoint?: string;
  /** Keep files in the Cache API ("sewd-models-v2") and reuse them while the server still
   * describes them the same way (a HEAD request per file; offline, as they are). Default true. */
  cache?: boolean;
}

export interface Word { word: string; /** seconds */ start: number; /** seconds */ end: number; }
export interface Transcript { text: string; words: Word[]; }
export interface LabelScore { label: string; score: number; }
export interface Classification { label: string; score: number; /** every class, in id order */ scores: LabelScore[]; }

export interface StreamOptions {
  /** The current hypothesis after the final text (replaces the previous partial). */
  onPartial?: (text: string) => void;
  /** Newly final words (never revised); times are absolute seconds in the session. */
  onFinal?: (text: string, words: Word[]) => void;
  /** A model run failed in the background; push() then throws it and finish() rejects with it. */
  onError?: (error: Error) => void;
  /** Seconds of audio before the committed hop the model sees (default 4). */
  leftContext?: number;
  /** Seconds committed per model run (default 0.5). */
  hop?: number;
  /** Seconds after the hop the model sees (default 1): the latency of final text. */
  rightContext?: number;
  /** Seconds of silence appended to each window that ends mid-speech (default 0.3, 0 for
   *  none): an utterance-level model reads a window cut mid-word much worse without it. */
  trailingSilence?: number;
  /** Seconds a window must span before its text becomes final (default 3, 0 for none): at the
   *  start of a stream shorter windows give partial text only, since they read worse. */
  minWindow?: number;
}

export interface Tensor { shape: number[]; data: Float32Array; }
export interface ForwardOptions { hiddenStates?: boolean; attentions?: boolean; }
export interface ForwardOutput {
  lastHiddenState: Tensor;
  /** CTC [1, frames, vocab] or classifier [1, labels]; absent for a base model. */
  logits?: Tensor;
  hiddenStates?: Tensor[];
  attentions?: Tensor[];
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "LoadOptions")]
    pub type LoadOptions;
    #[wasm_bindgen(typescript_type = "StreamOptions")]
    pub type StreamOptionsJs;
    #[wasm_bindgen(typescript_type = "ForwardOptions")]
    pub type ForwardOptions;
}

/// A JS `Error` with `msg`.
pub(crate) fn js_error(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&msg.to_string()).into()
}

pub(crate) fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| js_error(format!("cannot build the result: {e}")))
}

/// Option `name` of `obj`, if set (not undefined/null).
pub(crate) fn option(obj: &JsValue, name: &str) -> Result<Option<JsValue>, JsValue> {
    if obj.is_undefined() || obj.is_null() {
        return Ok(None);
    }
    if !obj.is_object() {
        return Err(js_error(format!("options must be an object, got {}", fetch::js_text(obj))));
    }
    let v = Reflect::get(obj, &name.into())?;
    Ok(if v.is_undefined() || v.is_null() { None } else { Some(v) })
}

pub(crate) fn option_fn(obj: &JsValue, name: &str) -> Result<Option<Function>, JsValue> {
    match option(obj, name)? {
        None => Ok(None),
        Some(v) => v.dyn_into::<Function>().map(Some).map_err(|_| js_error(format!("option {name} must be a function"))),
    }
}

/// The `model` argument of `load`: a string, or a `URL` (its `href`).
fn model_location(model: &JsValue) -> Result<String, JsValue> {
    if let Some(s) = model.as_string() {
        return Ok(s);
    }
    if model.is_object() {
        if let Some(href) = Reflect::get(model, &"href".into()).ok().and_then(|h| h.as_string()) {
            return Ok(href);
        }
    }
    Err(js_error(format!("the model must be a hub id or URL string, or a URL object; got {}", model.js_typeof().as_string().unwrap_or_default())))
}

pub(crate) fn option_str(obj: &JsValue, name: &str) -> Result<Option<String>, JsValue> {
    match option(obj, name)? {
        None => Ok(None),
        Some(v) => v.as_string().map(Some).ok_or_else(|| js_error(format!("option {name} must be a string"))),
    }
}

pub(crate) fn option_f64(obj: &JsValue, name: &str) -> Result<Option<f64>, JsValue> {
    match option(obj, name)? {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| js_error(format!("option {name} must be a number"))),
    }
}

fn option_bool(obj: &JsValue, name: &str) -> Result<Option<bool>, JsValue> {
    match option(obj, name)? {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| js_error(format!("option {name} must be true or false"))),
    }
}

/// Backends that can read a tensor back without blocking the browser.
pub(crate) trait Readback: Backend {
    async fn read(&self, t: &Self::Tensor) -> Result<TensorData, BackendError>;
}

impl Readback for Cpu {
    async fn read(&self, t: &Self::Tensor) -> Result<TensorData, BackendError> {
        self.download(t)
    }
}

impl Readback for Gpu {
    async fn read(&self, t: &Self::Tensor) -> Result<TensorData, BackendError> {
        self.download_async(t).await
    }
}

/// What a forward pass gives back to JS.
pub(crate) struct Outputs {
    pub last_hidden_state: TensorData,
    pub logits: Option<TensorData>,
    pub hidden_states: Vec<TensorData>,
    pub attentions: Vec<TensorData>,
}

async fn run_forward<B: Readback>(p: &Pipeline<B>, samples: &[f32], opts: Options, everything: bool) -> crate::Result<Outputs> {
    let out = p.forward(samples, opts)?;
    let read = |t| p.backend.read(t);
    let logits = match &out.logits {
        Some(t) => Some(read(t).await.map_err(ModelError::from)?),
        None => None,
    };
    if !everything {
        return Ok(Outputs { last_hidden_state: TensorData { shape: vec![], data: vec![] }, logits, hidden_states: vec![], attentions: vec![] });
    }
    let mut hidden_states = Vec::new();
    for t in &out.hidden_states {
        hidden_states.push(read(t).await.map_err(ModelError::from)?);
    }
    let mut attentions = Vec::new();
    for t in &out.attentions {
        attentions.push(read(t).await.map_err(ModelError::from)?);
    }
    Ok(Outputs { last_hidden_state: read(&out.last_hidden_state).await.map_err(ModelError::from)?, logits, hidden_states, attentions })
}

/// A loaded model on one backend (one per Recognizer, so the size gap is moot).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Engine {
    Cpu(Pipeline<Cpu>),
    Gpu(Pipeline<Gpu>),
}

/// Calls `$body` with the pipeline of whichever backend `$engine` runs.
macro_rules! with_pipeline {
    ($engine:expr, $p:ident => $body:expr) => {
        match $engine {
            Engine::Cpu($p) => $body,
            Engine::Gpu($p) => $body,
        }
    };
}

impl Engine {
    /// The JS name: "webgpu" or "cpu".
    fn name(&self) -> &'static str {
        match self {
            Engine::Cpu(_) => "cpu",
            Engine::Gpu(_) => "webgpu",
        }
    }

    fn is_gpu(&self) -> bool {
        matches!(self, Engine::Gpu(_))
    }

    fn head(&self) -> Head {
        with_pipeline!(self, p => p.model.head)
    }

    pub(crate) fn tokenizer(&self) -> Option<&CtcTokenizer> {
        with_pipeline!(self, p => p.tokenizer.as_ref())
    }

    fn prepare(&self, audio: Audio) -> crate::Result<Vec<f32>> {
        with_pipeline!(self, p => p.prepare(audio))
    }

    fn seconds_per_frame(&self) -> f32 {
        with_pipeline!(self, p => p.seconds_per_frame())
    }

    fn sample_rate(&self) -> u32 {
        with_pipeline!(self, p => p.preprocessor.sampling_rate)
    }

    fn label(&self, i: usize) -> String {
        with_pipeline!(self, p => p.model.config.label(i))
    }

    pub(crate) fn stream_model(&self) -> crate::Result<crate::stream::StreamModel> {
        with_pipeline!(self, p => crate::stream::StreamModel::of(p))
    }

    async fn forward(&self, samples: &[f32], opts: Options, everything: bool) -> crate::Result<Outputs> {
        with_pipeline!(self, p => run_forward(p, samples, opts, everything).await)
    }
}

/// Whether `e` is the GPU failing (rather than bad input).
fn is_device_error(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Model(ModelError::Backend(BackendError::Device(_))))
}

pub(crate) struct Inner {
    engine: RefCell<Rc<Engine>>,
    /// The model files, kept while on the GPU to rebuild on the CPU if the
    /// device is lost.
    files: RefCell<Option<Rc<ModelFiles>>>,
    location: String,
    /// Why the GPU was given up, if it was.
    fallback: RefCell<Option<String>>,
    /// Test hook: GPU forward passes fail as if the device were lost.
    fail_gpu: std::cell::Cell<bool>,
}

impl Inner {
    pub(crate) fn engine(&self) -> Rc<Engine> {
        self.engine.borrow().clone()
    }

    /// Replaces a failed GPU engine with a CPU one built from the kept files.
    fn fall_back(&self, why: &crate::Error) -> Result<(), JsValue> {
        let files = self.files.borrow_mut().take().ok_or_else(|| js_error(format!("{why} (and no model files were kept to continue on the CPU)")))?;
        web_sys::console::warn_1(&format!("sewd: the GPU failed ({why}); continuing on the CPU").into());
        let p = Pipeline::new(Cpu, &files).map_err(|e| js_error(format!("{why}; rebuilding the model on the CPU failed too: {e}")))?;
        *self.engine.borrow_mut() = Rc::new(Engine::Cpu(p));
        *self.fallback.borrow_mut() = Some(why.to_string());
        Ok(())
    }

    /// A forward pass over prepared samples, moving to the CPU if the GPU fails.
    pub(crate) async fn forward(&self, samples: &[f32], opts: Options, everything: bool) -> Result<Outputs, JsValue> {
        let engine = self.engine();
        let mut result = engine.forward(samples, opts, everything).await;
        if engine.is_gpu() && self.fail_gpu.get() {
            result = Err(ModelError::Backend(BackendError::Device("the GPU device was lost (simulated by a test)".into())).into());
        }
        match result {
            Ok(o) => Ok(o),
            Err(e) if engine.is_gpu() && is_device_error(&e) => {
                // Calls in flight together all fail; the first moves the model.
                if self.engine().is_gpu() {
                    self.fall_back(&e)?;
                }
                self.engine().forward(samples, opts, everything).await.map_err(js_error)
            }
            Err(e) => Err(js_error(e)),
        }
    }

    /// CTC logits `[frames, vocab]` of prepared samples.
    pub(crate) async fn ctc_logits(&self, samples: &[f32]) -> Result<TensorData, JsValue> {
        if self.engine().head() != Head::Ctc {
            return Err(js_error(format!("{}: this model has no CTC (lm_head) head, so it cannot transcribe", self.location)));
        }
        let mut t = self.forward(samples, Options::default(), false).await?.logits.ok_or_else(|| js_error("the model returned no logits"))?;
        t.shape.remove(0);
        Ok(t)
    }

    fn prepare(&self, samples: Vec<f32>, sample_rate: u32) -> Result<Vec<f32>, JsValue> {
        self.engine().prepare(Audio { samples, sample_rate }).map_err(js_error)
    }
}

#[derive(Serialize)]
pub(crate) struct WordJs {
    pub word: String,
    pub start: f32,
    pub end: f32,
}

impl From<crate::tokenizer::Word> for WordJs {
    fn from(w: crate::tokenizer::Word) -> Self {
        WordJs { word: w.word, start: w.start, end: w.end }
    }
}

#[derive(Serialize)]
pub(crate) struct TranscriptJs {
    pub text: String,
    pub words: Vec<WordJs>,
}

#[derive(Serialize)]
struct LabelScore {
    label: String,
    score: f32,
}

#[derive(Serialize)]
struct ClassificationJs {
    label: String,
    score: f32,
    scores: Vec<LabelScore>,
}

fn tensor_js(t: &TensorData) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    let shape: js_sys::Array = t.shape.iter().map(|&d| JsValue::from_f64(d as f64)).collect();
    Reflect::set(&o, &"shape".into(), &shape)?;
    Reflect::set(&o, &"data".into(), &js_sys::Float32Array::from(&t.data[..]))?;
    Ok(o.into())
}

static PANIC_HOOK: std::sync::Once = std::sync::Once::new();

/// A loaded SEW-D model (CTC recognizer or audio classifier).
#[wasm_bindgen]
pub struct Recognizer {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Recognizer {
    /// Loads a model from a base URL in the Hugging Face layout (files
    /// `config.json`, `vocab.json`, `preprocessor_config.json`, `tokenizer_config.json`,
    /// `model.safetensors` or `pytorch_model.bin`) or a hub id. A `URL`
    /// object (`new URL("./model/", import.meta.url)`) works too.
    pub async fn load(
        #[wasm_bindgen(unchecked_param_type = "string | URL")] model: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: JsValue,
    ) -> Result<Recognizer, JsValue> {
        PANIC_HOOK.call_once(console_error_panic_hook::set_once);
        let model = model_location(&model)?;
        let backend = option_str(&options, "backend")?.unwrap_or_else(|| "auto".into());
        if !matches!(backend.as_str(), "auto" | "webgpu" | "cpu") {
            return Err(js_error(format!("option backend must be \"auto\", \"webgpu\" or \"cpu\", got {backend:?}")));
        }
        let progress = fetch::Progress { callback: option_fn(&options, "onProgress")? };
        let endpoint = option_str(&options, "endpoint")?;
        let use_cache = option_bool(&options, "cache")?.unwrap_or(true);
        let location = Location::parse(&model, endpoint.as_deref()).map_err(js_error)?;
        if location.is_relative() && !fetch::has_page_address() {
            return Err(js_error(format!(
                "{model:?} is a relative URL, and there is no page address here (Node) to resolve it against: pass an absolute http(s) URL"
            )));
        }
        let here = location.describe();
        let cache = if use_cache { fetch::open_cache().await } else { None };
        // Cached files count only when an earlier load stored all of them.
        let marker = location.url(fetch::COMPLETE_MARKER);
        let cache_complete = match &cache {
            Some(c) => fetch::cached(c, &marker).await,
            None => false,
        };
        let read_cache = cache.as_ref().filter(|_| cache_complete);

        // Download (or take from the cache) every file first; store them only
        // once the model has loaded, so a bad file is not kept. Downloaded
        // files (and 404s) are kept for that in `fresh`, moved there after
        // use rather than copied: the weights can be hundreds of MB.
        let mut fresh: Vec<(String, Fetched)> = Vec::new();
        let get = async |file: &str| -> Result<(String, Fetched), JsValue> {
            let url = location.url(file);
            let fetched = fetch::fetch_file(&url, file, read_cache, &progress).await.map_err(js_error)?;
            Ok((url, fetched))
        };
        let mut keep = |url: String, fetched: Fetched| {
            if !fetched.from_cache && cache.is_some() {
                fresh.push((url, fetched));
            }
        };
        let text = |bytes: &[u8], url: &str| String::from_utf8(bytes.to_vec()).map_err(|_| js_error(format!("{url}: not UTF-8 text")));

        let (config_url, config) = get("config.json").await?;
        let config_json = match &config.bytes {
            Some(b) => text(b, &config_url)?,
            None => return Err(js_error(format!("{config_url}: not found (404): no model at {here}"))),
        };
        keep(config_url, config);
        let mut optional_text = async |file: &str| -> Result<Option<String>, JsValue> {
            let (url, fetched) = get(file).await?;
            let t = fetched.bytes.as_deref().map(|b| text(b, &url)).transpose()?;
            keep(url, fetched);
            Ok(t)
        };
        let vocab_json = optional_text("vocab.json").await?;
        let preprocessor_json = optional_text("preprocessor_config.json").await?;
        let tokenizer_config_json = match vocab_json {
            Some(_) => optional_text("tokenizer_config.json").await?,
            None => None,
        };
        let (url, safetensors) = get(SAFETENSORS_FILE).await?;
        let weights = match &safetensors.bytes {
            Some(b) => {
                let w = WeightStore::from_safetensors(b, &url).map_err(js_error)?;
                keep(url, safetensors);
                w
            }
            None => {
                keep(url, safetensors);
                let (url, bin) = get(PYTORCH_FILE).await?;
                let Some(b) = &bin.bytes else {
                    return Err(js_error(format!(
                        "no weights for {here}: neither {} nor {} exists (404)",
                        location.url(SAFETENSORS_FILE),
                        location.url(PYTORCH_FILE)
                    )));
                };
                let w = WeightStore::from_pytorch(b, &url).map_err(js_error)?;
                keep(url, bin);
                w
            }
        };
        let files = ModelFiles { config_json, weights, vocab_json, preprocessor_json, tokenizer_config_json };

        let (engine, keep) = build_engine(&backend, files).await.map_err(|e| js_error(format!("loading {here}: {e}")))?;
        if let Some(cache) = &cache {
            if !fresh.is_empty() {
                let mut all = true;
                for (url, fetched) in &fresh {
                    all &= fetch::store(cache, url, fetched.bytes.as_deref(), &fetched.validators).await;
                }
                if all {
                    fetch::store(cache, &marker, Some(&[]), &fetch::Validators::default()).await;
                }
            }
        }
        Ok(Recognizer {
            inner: Rc::new(Inner {
                engine: RefCell::new(Rc::new(engine)),
                files: RefCell::new(keep.map(Rc::new)),
                location: here,
                fallback: RefCell::new(None),
                fail_gpu: std::cell::Cell::new(false),
            }),
        })
    }

    /// Deletes every cached model file (the Cache API cache "sewd-models-v2"),
    /// so the next load downloads again. Resolves to whether there was one.
    #[wasm_bindgen(js_name = clearCache)]
    pub async fn clear_cache() -> Result<bool, JsValue> {
        fetch::clear_cache().await.map_err(js_error)
    }

    /// The backend that runs the model: "webgpu" or "cpu".
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn backend(&self) -> String {
        self.inner.engine().name().into()
    }

    /// Why the model moved from WebGPU to the CPU (a GPU error or device
    /// loss), or `undefined` if it did not.
    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.inner.fallback.borrow().clone()
    }

    /// Test hook: makes every GPU forward pass (as it ends) fail as a lost
    /// device would, to exercise the move to the CPU.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = __simulateGpuLoss, skip_typescript)]
    pub fn __simulate_gpu_loss_for_tests(&self) {
        self.inner.fail_gpu.set(true);
    }

    /// "ctc", "classifier" or "base" (no head).
    #[wasm_bindgen(getter, unchecked_return_type = "\"ctc\" | \"classifier\" | \"base\"")]
    pub fn head(&self) -> String {
        match self.inner.engine().head() {
            Head::Ctc => "ctc",
            Head::Classifier => "classifier",
            Head::Base => "base",
        }
        .into()
    }

    /// The model's sample rate (audio at other rates is resampled).
    #[wasm_bindgen(getter, js_name = sampleRate)]
    pub fn sample_rate(&self) -> u32 {
        self.inner.engine().sample_rate()
    }

    /// Transcribes mono `samples` (-1..1) at `sampleRate` Hz.
    #[wasm_bindgen(unchecked_return_type = "Transcript")]
    pub async fn transcribe(&self, samples: Vec<f32>, #[wasm_bindgen(js_name = sampleRate)] sample_rate: u32) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        let engine = inner.engine();
        let tokenizer = engine.tokenizer().cloned().ok_or_else(|| {
            js_error(format!("{}: the model has no vocab.json, so it cannot transcribe", inner.location))
        })?;
        let prepared = inner.prepare(samples, sample_rate)?;
        let logits = inner.ctc_logits(&prepared).await?;
        let ids = CtcTokenizer::argmax(&logits.data, logits.shape[1]);
        let t = tokenizer.decode_with_words(&ids, engine.seconds_per_frame());
        to_js(&TranscriptJs { text: t.text, words: t.words.into_iter().map(WordJs::from).collect() })
    }

    /// Classifies mono `samples` (-1..1) at `sampleRate` Hz.
    #[wasm_bindgen(unchecked_return_type = "Classification")]
    pub async fn classify(&self, samples: Vec<f32>, #[wasm_bindgen(js_name = sampleRate)] sample_rate: u32) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        let engine = inner.engine();
        if engine.head() != Head::Classifier {
            return Err(js_error(format!("{}: this model has no sequence-classification head, so it cannot classify", inner.location)));
        }
        let prepared = inner.prepare(samples, sample_rate)?;
        let logits = inner.forward(&prepared, Options::default(), false).await?.logits.ok_or_else(|| js_error("the model returned no logits"))?;
        let max = logits.data.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exps: Vec<f32> = logits.data.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let engine = inner.engine();
        let scores: Vec<LabelScore> = exps.iter().enumerate().map(|(i, e)| LabelScore { label: engine.label(i), score: e / sum }).collect();
        let best = scores.iter().enumerate().fold(0, |b, (i, s)| if s.score > scores[b].score { i } else { b });
        to_js(&ClassificationJs { label: scores[best].label.clone(), score: scores[best].score, scores })
    }

    /// The raw forward pass (batch of one) over `samples` at `sampleRate` Hz,
    /// resampled and normalized as for `transcribe`: logits and, if asked,
    /// every hidden state and attention map.
    #[wasm_bindgen(unchecked_return_type = "ForwardOutput")]
    pub async fn forward(
        &self,
        samples: Vec<f32>,
        #[wasm_bindgen(js_name = sampleRate)] sample_rate: u32,
        #[wasm_bindgen(unchecked_optional_param_type = "ForwardOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        let opts = Options {
            output_hidden_states: option_bool(&options, "hiddenStates")?.unwrap_or(false),
            output_attentions: option_bool(&options, "attentions")?.unwrap_or(false),
        };
        let prepared = inner.prepare(samples, sample_rate)?;
        let out = inner.forward(&prepared, opts, true).await?;
        let o = js_sys::Object::new();
        Reflect::set(&o, &"lastHiddenState".into(), &tensor_js(&out.last_hidden_state)?)?;
        if let Some(l) = &out.logits {
            Reflect::set(&o, &"logits".into(), &tensor_js(l)?)?;
        }
        if opts.output_hidden_states {
            let a: js_sys::Array = out.hidden_states.iter().map(tensor_js).collect::<Result<_, _>>()?;
            Reflect::set(&o, &"hiddenStates".into(), &a)?;
        }
        if opts.output_attentions {
            let a: js_sys::Array = out.attentions.iter().map(tensor_js).collect::<Result<_, _>>()?;
            Reflect::set(&o, &"attentions".into(), &a)?;
        }
        Ok(o.into())
    }

    /// Starts a streaming session (see `StreamOptions`).
    pub fn stream(&self, #[wasm_bindgen(unchecked_optional_param_type = "StreamOptions")] options: JsValue) -> Result<Stream, JsValue> {
        Stream::new(self.inner.clone(), &options)
    }
}

/// Builds the model on the chosen backend. Returns the files to keep for a
/// CPU fallback when the engine is on the GPU.
async fn build_engine(backend: &str, files: ModelFiles) -> Result<(Engine, Option<ModelFiles>), String> {
    // A software WebGPU adapter (SwiftShader, where there is no usable GPU)
    // runs this model some 30x slower than the wasm CPU path: "auto" takes
    // the CPU then; "webgpu" still gets it.
    let software = if backend == "auto" { software_webgpu_adapter().await } else { None };
    if let Some(which) = &software {
        web_sys::console::info_1(
            &format!("sewd: WebGPU offers only a software adapter ({which}), slower than the CPU path; using the CPU (backend \"webgpu\" forces WebGPU)").into(),
        );
    }
    if backend != "cpu" && software.is_none() {
        let gpu = if webgpu_present() {
            Gpu::new_async().await.map_err(|e| e.to_string())
        } else {
            Err("no WebGPU here (navigator.gpu is missing: Node has none, and Chrome has it only in a secure context)".to_string())
        };
        let built = match gpu {
            Ok(gpu) => Pipeline::new(gpu, &files).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match built {
            Ok(p) => return Ok((Engine::Gpu(p), Some(files))),
            Err(e) if backend == "webgpu" => return Err(format!("backend \"webgpu\" was requested but WebGPU cannot run the model: {e}")),
            Err(e) => web_sys::console::info_1(&format!("sewd: WebGPU unavailable ({e}); using the CPU").into()),
        }
    }
    let p = Pipeline::new(Cpu, &files).map_err(|e| e.to_string())?;
    Ok((Engine::Cpu(p), None))
}

/// What the default WebGPU adapter is when it is a software fallback
/// (`GPUAdapterInfo.isFallbackAdapter`, e.g. "swiftshader"); `None` for a
/// real GPU or when there is no adapter to ask.
async fn software_webgpu_adapter() -> Option<String> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok().filter(|n| n.is_object())?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok().filter(|g| g.is_object())?;
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into()).ok()?.dyn_into().ok()?;
    // The options wgpu asks with (device.rs), so both see the same adapter.
    let options = js_sys::Object::new();
    Reflect::set(&options, &"powerPreference".into(), &"high-performance".into()).ok()?;
    let promise: js_sys::Promise = request.call1(&gpu, &options).ok()?.dyn_into().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok().filter(|a| a.is_object())?;
    let info = Reflect::get(&adapter, &"info".into()).ok().filter(|i| i.is_object());
    let is_fallback = |o: &JsValue| Reflect::get(o, &"isFallbackAdapter".into()).ok().and_then(|v| v.as_bool());
    // `isFallbackAdapter` moved from the adapter to its info (Chrome 136).
    if !info.as_ref().and_then(is_fallback).or_else(|| is_fallback(&adapter)).unwrap_or(false) {
        return None;
    }
    let architecture = info.and_then(|i| Reflect::get(&i, &"architecture".into()).ok()).and_then(|a| a.as_string());
    Some(architecture.filter(|a| !a.is_empty()).unwrap_or_else(|| "a fallback adapter".into()))
}

/// Whether the global scope has `navigator.gpu` (asking wgpu for an adapter
/// without it would fail less clearly).
fn webgpu_present() -> bool {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .filter(|n| n.is_object())
        .and_then(|n| Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null())
}
