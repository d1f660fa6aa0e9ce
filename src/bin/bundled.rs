//! The demo models compiled into the `sewd` binary (`models/sewd-demo-en`,
//! `models/sewd-demo-kws`, trained by `training/`), so that `sewd transcribe FILE` and
//! `sewd classify FILE` work wherever the binary is copied, with no model download.

use sewd::pipeline::ModelFiles;
use sewd::weights::WeightStore;

/// One model directory's files, embedded at compile time.
pub struct BundledModel {
    pub name: &'static str,
    config: &'static str,
    vocab: Option<&'static str>,
    preprocessor: &'static str,
    safetensors: &'static [u8],
}

macro_rules! model_file {
    (str $name:literal, $file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/", $name, "/", $file))
    };
    (bytes $name:literal, $file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/", $name, "/", $file))
    };
}

/// The English character CTC model: the default of `sewd transcribe`.
pub const DEMO_EN: BundledModel = BundledModel {
    name: "sewd-demo-en",
    config: model_file!(str "sewd-demo-en", "config.json"),
    vocab: Some(model_file!(str "sewd-demo-en", "vocab.json")),
    preprocessor: model_file!(str "sewd-demo-en", "preprocessor_config.json"),
    safetensors: model_file!(bytes "sewd-demo-en", "model.safetensors"),
};

/// The keyword spotter (ten Speech Commands words, `_unknown_`, `_silence_`): the default
/// of `sewd classify`.
pub const DEMO_KWS: BundledModel = BundledModel {
    name: "sewd-demo-kws",
    config: model_file!(str "sewd-demo-kws", "config.json"),
    vocab: None,
    preprocessor: model_file!(str "sewd-demo-kws", "preprocessor_config.json"),
    safetensors: model_file!(bytes "sewd-demo-kws", "model.safetensors"),
};

impl BundledModel {
    pub fn files(&self) -> Result<ModelFiles, String> {
        let source = format!("bundled {}/model.safetensors", self.name);
        Ok(ModelFiles {
            config_json: self.config.to_string(),
            weights: WeightStore::from_safetensors(self.safetensors, &source).map_err(|e| e.to_string())?,
            vocab_json: self.vocab.map(str::to_string),
            preprocessor_json: Some(self.preprocessor.to_string()),
            // Both bundled models use the default special tokens.
            tokenizer_config_json: None,
        })
    }
}
