//! sewd: the SEW-D speech model (Hugging Face `SEWDModel`, `SEWDForCTC`,
//! `SEWDForSequenceClassification`) in Rust, for native and WebAssembly.
//!
//! Flow: [`audio`] (wav, resample, normalize) → [`model`] (feature encoder →
//! squeezed DeBERTa-v2 encoder → heads, written once against [`backend::Backend`])
//! → [`tokenizer`] (CTC decoding, word timestamps). [`config`] and [`weights`]
//! read checkpoints in the Hugging Face layout.

pub mod audio;
pub mod backend;
pub mod config;
pub mod error;
pub mod model;
pub mod npy;
pub mod pipeline;
pub mod stream;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
pub mod weights;

pub use error::{Error, Result};
