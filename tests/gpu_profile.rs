//! Per-kernel GPU timing (`Gpu::new_profiled`, `Gpu::take_profile`): every
//! dispatch timed once, outputs unchanged. Fails (does not skip) without a GPU
//! adapter with timestamp queries; natively lavapipe is enough.

mod common;

use sewd::backend::gpu::{Gpu, KernelTime};
use sewd::backend::Backend;
use sewd::config::Activation;
use sewd::model::Options;
use sewd::pipeline::Pipeline;

fn open(profiled: bool) -> Gpu {
    let g = if profiled { Gpu::new_profiled() } else { Gpu::new() };
    g.unwrap_or_else(|e| panic!("{e}"))
}

fn check_shape(profile: &[KernelTime]) {
    assert!(!profile.is_empty(), "empty profile");
    for k in profile {
        assert!(k.ms.is_finite() && k.ms >= 0.0, "{k:?}");
        assert!(k.dispatches > 0, "{k:?}");
    }
    for w in profile.windows(2) {
        assert!(w[0].ms >= w[1].ms, "not sorted slowest first: {profile:?}");
    }
    let mut labels: Vec<&str> = profile.iter().map(|k| k.label.as_str()).collect();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), profile.len(), "a label twice: {profile:?}");
}

/// Logits and attention maps of one pass over 3 s of speech, and the device's
/// dispatch count for that pass.
fn forward(gpu: Gpu) -> (Vec<Vec<f32>>, u64, Gpu) {
    let pipe = Pipeline::load_dir(gpu, &common::fixtures().join("ctc_group_both_shared")).unwrap_or_else(|e| panic!("{e}"));
    let audio = sewd::audio::read_wav_file(&common::fixtures().join("speech_3s.wav")).unwrap();
    let samples = pipe.prepare(audio).unwrap();
    let before = pipe.backend.dispatch_count();
    let out = pipe.forward(&samples, Options { output_hidden_states: false, output_attentions: true }).unwrap();
    let mut tensors = vec![pipe.download(out.logits.as_ref().expect("a CTC model")).unwrap().data];
    for a in &out.attentions {
        tensors.push(pipe.download(a).unwrap().data);
    }
    let dispatches = pipe.backend.dispatch_count() - before;
    drop(out);
    (tensors, dispatches, pipe.backend)
}

#[test]
fn a_profiled_forward_pass_times_every_dispatch_and_changes_nothing() {
    let (want, plain_dispatches, _) = forward(open(false));
    let gpu = open(true);
    eprintln!("adapter: {}", gpu.adapter_name());
    // Nothing recorded yet: an empty profile.
    assert_eq!(gpu.take_profile().unwrap(), vec![]);
    let (got, dispatches, gpu) = forward(gpu);
    let profile = gpu.take_profile().unwrap();
    for k in &profile {
        eprintln!("{:<40} {:>5} {:>10.3} ms", k.label, k.dispatches, k.ms);
    }
    check_shape(&profile);
    assert_eq!(profile.iter().map(|k| k.dispatches).sum::<u64>(), dispatches, "{profile:?}");
    assert_eq!(dispatches, plain_dispatches);
    let labels: Vec<&str> = profile.iter().map(|k| k.label.as_str()).collect();
    // The GEMM's label names its tiles when they are not the default 64x64.
    let matmul_use = |l: &str, u: &str| l.starts_with("matmul::main") && l.ends_with(&format!("[{u}]"));
    for u in ["linear", "conv, feature encoder", "conv, positional"] {
        assert!(labels.iter().any(|l| matmul_use(l, u)), "no matmul [{u}] in {labels:?}");
    }
    for want in ["attention::main", "attention::probs", "layer_norm::main"] {
        assert!(labels.contains(&want), "no {want} in {labels:?}");
    }
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "output {i} differs between the profiled and the plain device");
    }
    // Taken: the next profile starts empty.
    assert_eq!(gpu.take_profile().unwrap(), vec![]);
}

/// More dispatches in one submission than a query set holds (2048 per set
/// of 4096 queries): three sets, all resolved.
#[test]
fn more_dispatches_than_one_query_set_holds() {
    let gpu = open(true);
    let n = 4500;
    let data: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 100.0).collect();
    let mut x = gpu.upload(&[1000], &data).unwrap();
    for _ in 0..n {
        x = gpu.activate(x, Activation::Relu).unwrap();
    }
    let got = gpu.download(&x).unwrap().data;
    assert_eq!(got, data.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
    let profile = gpu.take_profile().unwrap();
    check_shape(&profile);
    assert_eq!(profile.len(), 1, "{profile:?}");
    assert_eq!(profile[0].label, "elementwise::activate");
    assert_eq!(profile[0].dispatches, n);
    assert_eq!(gpu.dispatch_count(), n);

    // Work recorded but not downloaded is submitted and timed by take_profile.
    gpu.activate(x, Activation::Relu).unwrap();
    let profile = gpu.take_profile().unwrap();
    assert_eq!((profile.len(), profile[0].dispatches), (1, 1), "{profile:?}");
}

#[test]
fn an_unprofiled_device_has_no_profile() {
    let err = open(false).take_profile().unwrap_err().to_string();
    assert!(err.contains("new_profiled"), "{err}");
}
