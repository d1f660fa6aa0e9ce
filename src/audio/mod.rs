//! STUB: being written by a helper.
use thiserror::Error;
#[derive(Debug, Error)]
pub enum AudioError {
    #[error("{0}")]
    Other(String),
}
