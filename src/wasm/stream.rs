//! `rec.stream()`: the JS face of [`crate::stream::StreamSession`].
//!
//! `push` resamples and buffers synchronously and starts a background task
//! (if none runs) that runs every ready window and calls `onPartial` /
//! `onFinal`; `finish` ends the audio, waits for the task and resolves with
//! the whole session's final transcript.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{js_error, option_f64, option_fn, to_js, Inner, TranscriptJs, WordJs};
use crate::stream::{StreamOptions, StreamSession, Update};

struct State {
    rec: Rc<Inner>,
    session: RefCell<StreamSession>,
    min_samples: usize,
    on_partial: Option<Function>,
    on_final: Option<Function>,
    on_error: Option<Function>,
    running: Cell<bool>,
    error: RefCell<Option<String>>,
    words: RefCell<Vec<WordJs>>,
    /// `resolve` functions of callers waiting for the task to go idle.
    waiters: RefCell<Vec<Function>>,
}

/// A streaming transcription session (from `Recognizer.stream`).
#[wasm_bindgen]
pub struct Stream {
    state: Rc<State>,
}

fn call(f: &Option<Function>, args: &[JsValue]) {
    if let Some(f) = f {
        let arr: js_sys::Array = args.iter().collect();
        if let Err(e) = f.apply(&JsValue::NULL, &arr) {
            web_sys::console::warn_1(&format!("sewd: a stream callback threw: {}", super::fetch::js_text(&e)).into());
        }
    }
}

impl Stream {
    pub(crate) fn new(rec: Rc<Inner>, options: &JsValue) -> Result<Stream, JsValue> {
        let d = StreamOptions::default();
        let opts = StreamOptions {
            left_context_s: option_f64(options, "leftContext")?.map_or(d.left_context_s, |v| v as f32),
            hop_s: option_f64(options, "hop")?.map_or(d.hop_s, |v| v as f32),
            right_context_s: option_f64(options, "rightContext")?.map_or(d.right_context_s, |v| v as f32),
            trailing_silence_s: option_f64(options, "trailingSilence")?.map_or(d.trailing_silence_s, |v| v as f32),
            min_window_s: option_f64(options, "minWindow")?.map_or(d.min_window_s, |v| v as f32),
        };
        let engine = rec.engine();
        let tokenizer = engine
            .tokenizer()
            .ok_or_else(|| js_error(format!("{}: the model has no vocab.json, so it cannot transcribe", rec.location)))?;
        let model = engine.stream_model().map_err(|e| js_error(format!("{}: {e}", rec.location)))?;
        let min_samples = model.min_samples;
        let session = StreamSession::new(model, tokenizer, opts).map_err(js_error)?;
        drop(engine);
        Ok(Stream {
            state: Rc::new(State {
                rec,
                session: RefCell::new(session),
                min_samples,
                on_partial: option_fn(options, "onPartial")?,
                on_final: option_fn(options, "onFinal")?,
                on_error: option_fn(options, "onError")?,
                running: Cell::new(false),
                error: RefCell::new(None),
                words: RefCell::new(Vec::new()),
                waiters: RefCell::new(Vec::new()),
            }),
        })
    }
}

impl State {
    fn check(&self) -> Result<(), JsValue> {
        match &*self.error.borrow() {
            Some(e) => Err(js_error(e)),
            None => Ok(()),
        }
    }

    fn start(self: &Rc<Self>) {
        if self.running.replace(true) {
            return;
        }
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            me.run().await;
            me.running.set(false);
            for w in me.waiters.take() {
                let _ = w.call0(&JsValue::NULL);
            }
        });
    }

    /// Runs windows until none is ready. No `RefCell` borrow is held across
    /// an await or a callback (callbacks may call `push`).
    async fn run(&self) {
        loop {
            if self.error.borrow().is_some() {
                return;
            }
            let Some(window) = self.session.borrow_mut().next_window() else { return };
            let result: Result<Update, String> = if window.samples.len() < self.min_samples {
                let vocab = 1;
                self.session.borrow_mut().accept(window, &[], vocab).map_err(|e| e.to_string())
            } else {
                match self.rec.ctc_logits(&window.samples).await {
                    Ok(t) => {
                        let vocab = t.shape.last().copied().unwrap_or(0);
                        self.session.borrow_mut().accept(window, &t.data, vocab).map_err(|e| e.to_string())
                    }
                    Err(e) => {
                        self.session.borrow_mut().abandon(window);
                        Err(super::fetch::js_text(&e))
                    }
                }
            };
            match result {
                Ok(u) => {
                    if !u.final_words.is_empty() {
                        let words: Vec<WordJs> = u.final_words.into_iter().map(WordJs::from).collect();
                        let js_words = to_js(&words).unwrap_or(JsValue::UNDEFINED);
                        self.words.borrow_mut().extend(words);
                        call(&self.on_final, &[JsValue::from_str(&u.final_text), js_words]);
                    }
                    call(&self.on_partial, &[JsValue::from_str(&u.partial)]);
                }
                Err(e) => {
                    let msg = format!("stream: {e}");
                    *self.error.borrow_mut() = Some(msg.clone());
                    call(&self.on_error, &[js_error(msg)]);
                    return;
                }
            }
        }
    }

    async fn idle(&self) {
        if !self.running.get() {
            return;
        }
        let p = Promise::new(&mut |resolve, _| self.waiters.borrow_mut().push(resolve));
        let _ = JsFuture::from(p).await;
    }
}

#[wasm_bindgen]
impl Stream {
    /// Adds mono audio at `sampleRate` Hz (fixed by the first push). Model
    /// runs happen in the background; callbacks report their results.
    pub fn push(&self, samples: &[f32], #[wasm_bindgen(js_name = sampleRate)] sample_rate: u32) -> Result<(), JsValue> {
        self.state.check()?;
        self.state.session.borrow_mut().push_audio(samples, sample_rate).map_err(js_error)?;
        self.state.start();
        Ok(())
    }

    /// Ends the audio, runs what is left, and resolves with the whole
    /// session's final transcript (word times absolute in the session).
    #[wasm_bindgen(unchecked_return_type = "Transcript")]
    pub async fn finish(&self) -> Result<JsValue, JsValue> {
        let state = self.state.clone();
        state.check()?;
        state.session.borrow_mut().end_audio().map_err(js_error)?;
        state.idle().await;
        state.start();
        state.idle().await;
        state.check()?;
        let words = state.words.borrow();
        let text = words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ");
        let words: Vec<WordJs> = words.iter().map(|w| WordJs { word: w.word.clone(), start: w.start, end: w.end }).collect();
        to_js(&TranscriptJs { text, words })
    }

    /// Seconds of audio received so far.
    #[wasm_bindgen(getter)]
    pub fn received(&self) -> f64 {
        let s = self.state.session.borrow();
        s.total_samples() as f64 / s.model_rate() as f64
    }

    /// Seconds of audio whose text is final.
    #[wasm_bindgen(getter)]
    pub fn committed(&self) -> f64 {
        self.state.session.borrow().committed_seconds()
    }
}
