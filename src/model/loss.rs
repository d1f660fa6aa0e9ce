//! Losses as transformers computes them from the logits: CTC (`SEWDForCTC`)
//! and cross-entropy (`SEWDForSequenceClassification`).

use crate::config::SewdConfig;

/// log_softmax of one row, in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Negative log-likelihood of `target` under CTC for `frames` rows of `logits`
/// (`[frames, vocab]`, unnormalized), as `torch.nn.functional.ctc_loss` per item.
/// Infinite when no alignment exists.
pub fn ctc_nll(logits: &[f32], vocab: usize, frames: usize, target: &[u32], blank: u32) -> f64 {
    if frames == 0 {
        return f64::INFINITY;
    }
    let lp: Vec<Vec<f64>> = logits.chunks_exact(vocab).take(frames).map(log_softmax).collect();
    // Extended label sequence: blank, l1, blank, l2, ..., blank.
    let ext: Vec<u32> = std::iter::once(blank).chain(target.iter().flat_map(|&t| [t, blank])).collect();
    let s = ext.len();
    let at = |t: usize, k: usize| lp[t].get(ext[k] as usize).copied().unwrap_or(f64::NEG_INFINITY);
    let mut alpha = vec![f64::NEG_INFINITY; s];
    alpha[0] = at(0, 0);
    if s > 1 {
        alpha[1] = at(0, 1);
    }
    for t in 1..lp.len() {
        let mut next = vec![f64::NEG_INFINITY; s];
        for k in 0..s {
            let mut a = alpha[k];
            if k >= 1 {
                a = log_add(a, alpha[k - 1]);
            }
            if k >= 2 && ext[k] != blank && ext[k] != ext[k - 2] {
                a = log_add(a, alpha[k - 2]);
            }
            next[k] = a + at(t, k);
        }
        alpha = next;
    }
    let end = if s > 1 { log_add(alpha[s - 1], alpha[s - 2]) } else { alpha[0] };
    -end
}

/// transformers' CTC loss for a batch of `[targets.len(), frames, vocab]`
/// logits, as `SEWDForCTC` computes it from `config`: the blank is
/// `pad_token_id`; `ctc_loss_reduction` "mean" divides each item by its target
/// length (at least 1) and averages, "sum" adds; `ctc_zero_infinity` turns
/// impossible alignments into 0.
pub fn ctc_loss(logits: &[f32], frames: usize, vocab: usize, input_lengths: &[usize], targets: &[Vec<u32>], config: &SewdConfig) -> f64 {
    let batch = targets.len();
    let blank = config.pad_token_id.unwrap_or(0);
    let per_item: Vec<f64> = (0..batch)
        .map(|b| {
            let item = &logits[b * frames * vocab..(b + 1) * frames * vocab];
            let nll = ctc_nll(item, vocab, input_lengths[b].min(frames), &targets[b], blank);
            if config.ctc_zero_infinity && nll.is_infinite() { 0.0 } else { nll }
        })
        .collect();
    match config.ctc_loss_reduction.as_str() {
        "sum" => per_item.iter().sum(),
        _ => per_item.iter().zip(targets).map(|(l, t)| l / t.len().max(1) as f64).sum::<f64>() / batch.max(1) as f64,
    }
}

/// Mean cross-entropy of `[batch, classes]` logits against `labels`.
pub fn cross_entropy(logits: &[f32], classes: usize, labels: &[usize]) -> f64 {
    let total: f64 = logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &l)| -log_softmax(row).get(l).copied().unwrap_or(f64::NEG_INFINITY))
        .sum();
    total / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_of_a_certain_path_is_zero() {
        // Frames that say blank, a, blank with near certainty.
        let big = 50.0;
        let logits = [big, 0.0, 0.0, big, big, 0.0];
        let nll = ctc_nll(&logits, 2, 3, &[1], 0);
        assert!(nll < 1e-6, "{nll}");
        assert!(ctc_nll(&logits, 2, 1, &[1, 1], 0).is_infinite());
    }

    #[test]
    fn cross_entropy_uniform() {
        let ce = cross_entropy(&[0.0, 0.0, 0.0, 0.0], 4, &[2]);
        assert!((ce - 4f64.ln()).abs() < 1e-12);
    }
}
