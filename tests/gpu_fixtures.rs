//! Every transformers fixture through the GPU backend, within 2e-3.
//! Fails (does not skip) without a GPU adapter; lavapipe is enough natively.

mod common;

use std::sync::OnceLock;

use sewd::backend::gpu::Gpu;

const TOL: f32 = 2e-3;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new().unwrap_or_else(|e| panic!("{e}")))
}

macro_rules! fixture_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            common::check_case(gpu(), stringify!($name), TOL);
        }
    )*};
}

fixture_tests!(
    ctc_group_both_shared,
    base_layer_sq3_c2p_separate,
    ctc_p2c_nobuckets,
    base_attentions_short,
    cls_weighted,
    cls_mean,
    ctc_padded_batch,
    base_norel,
    ctc_sq1,
    ctc_int8
);

#[test]
fn every_fixture_case_is_listed() {
    assert_eq!(common::CASES.len(), 10, "a fixture case was added: list it above too");
}

/// The bundled English model (trained weights, head size 36) through the
/// whole GPU pipeline against the CPU one on a committed clip: random-weight
/// fixtures and per-op tests once missed a kernel that was wrong here.
#[test]
fn bundled_demo_model_gpu_matches_cpu() {
    use sewd::audio::read_wav_file;
    use sewd::backend::cpu::Cpu;
    use sewd::pipeline::Pipeline;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("models/sewd-demo-en");
    let cpu = Pipeline::load_dir(Cpu, &dir).unwrap_or_else(|e| panic!("{e}"));
    let gpu_p = Pipeline::load_dir(Gpu::new().unwrap_or_else(|e| panic!("{e}")), &dir).unwrap_or_else(|e| panic!("{e}"));
    for clip in ["en_weather.wav", "en_door.wav"] {
        let audio = read_wav_file(&root.join("tests/fixtures/clips").join(clip)).unwrap();
        let samples = cpu.prepare(audio).unwrap();
        let want = cpu.logits(&samples).unwrap();
        let got = gpu_p.logits(&samples).unwrap();
        common::assert_close(clip, &got.data, &want.data, &got.shape, &want.shape, 2e-3);
    }
}
