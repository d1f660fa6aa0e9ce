//! The bundled demo models (`models/sewd-demo-en`, `models/sewd-demo-kws`, trained by
//! `training/`) on committed espeak-ng clips in `tests/fixtures/clips/` (see its README).
//!
//! The expected values are what the clips really say, not whatever the models output.
//! The English model does not transcribe them correctly yet (see its model card), so its
//! test is `#[ignore]`d until a better-trained model is committed; run it with
//! `cargo test --test bundled_models -- --ignored`.

use std::path::PathBuf;

use sewd::audio::read_wav_file;
use sewd::backend::cpu::Cpu;
use sewd::pipeline::Pipeline;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn clip(name: &str) -> PathBuf {
    root().join("tests/fixtures/clips").join(name)
}

fn load(model: &str) -> Pipeline<Cpu> {
    let dir = root().join("models").join(model);
    Pipeline::load_dir(Cpu, &dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

#[test]
fn demo_models_load() {
    let en = load("sewd-demo-en");
    assert!(en.tokenizer.is_some());
    let kws = load("sewd-demo-kws");
    assert_eq!(kws.model.config.label(0), "yes");
    assert_eq!(kws.model.config.label(11), "_silence_");
}

#[test]
#[ignore = "models/sewd-demo-en does not transcribe these clips correctly yet (test-set CER 4.8%, WER 22.8%; it prints `the weaether is nice toda`, the door clip right: see its README)"]
fn demo_en_transcribes_committed_clips() {
    let pipeline = load("sewd-demo-en");
    for (name, expected) in [("en_weather.wav", "the weather is nice today"), ("en_door.wav", "open the door and turn on the light")] {
        let t = pipeline.transcribe(read_wav_file(&clip(name)).unwrap()).unwrap();
        assert_eq!(t.text.to_lowercase(), expected, "{name}");
    }
}

#[test]
fn demo_kws_classifies_committed_clip() {
    let pipeline = load("sewd-demo-kws");
    let c = pipeline.classify(read_wav_file(&clip("kws_yes.wav")).unwrap()).unwrap();
    assert_eq!(c.label, "yes");
    assert_eq!(c.scores.len(), 12);
}
