//! Name variants tried when looking a tensor up.

/// The prefix Hugging Face puts before the base model's tensors in
/// `SEWDForCTC` / `SEWDForSequenceClassification` checkpoints.
pub(crate) const BASE_PREFIX: &str = "sew_d.";

/// `name` itself, then `name` with the `sew_d.` prefix removed, or added when it has none.
pub(crate) fn candidates(name: &str) -> Vec<String> {
    let other = match name.strip_prefix(BASE_PREFIX) {
        Some(rest) => rest.to_string(),
        None => format!("{BASE_PREFIX}{name}"),
    };
    vec![name.to_string(), other]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_or_strips_prefix() {
        assert_eq!(candidates("encoder.x"), ["encoder.x", "sew_d.encoder.x"]);
        assert_eq!(
            candidates("sew_d.encoder.x"),
            ["sew_d.encoder.x", "encoder.x"]
        );
    }
}
