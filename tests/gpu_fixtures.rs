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
    ctc_padded_batch
);

#[test]
fn every_fixture_case_is_listed() {
    assert_eq!(common::CASES.len(), 7, "a fixture case was added: list it above too");
}
