//! Every transformers fixture through the CPU backend, within 1e-4.

mod common;

use sewd::backend::cpu::Cpu;

const TOL: f32 = 1e-4;

macro_rules! fixture_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            common::check_case(&Cpu, stringify!($name), TOL);
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
fn relative_positions_match_transformers_exactly() {
    let text = std::fs::read_to_string(common::fixtures().join("rel_pos.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let l = v["L"].as_i64().unwrap();
    for (key, table) in v["tables"].as_object().unwrap() {
        let (b, m) = key.trim_start_matches('b').split_once("_m").unwrap();
        let (buckets, max): (i64, i64) = (b.parse().unwrap(), m.parse().unwrap());
        for (i, want) in table.as_array().unwrap().iter().enumerate() {
            let d = i as i64 - (l - 1);
            let got = sewd::backend::relative::bucket(d, buckets, if max > 0 { max as usize } else { 0 });
            assert_eq!(got, want.as_i64().unwrap(), "{key}: offset {d}");
        }
    }
}

/// The comparison every fixture test relies on must not lose a NaN to a
/// later finite element.
#[test]
#[should_panic(expected = "NaN")]
fn assert_close_fails_on_a_nan_before_finite_values() {
    common::assert_close("nan", &[0.0, f32::NAN, 1.0], &[0.0, 0.5, 1.0], &[3], &[3], 1e-4);
}
