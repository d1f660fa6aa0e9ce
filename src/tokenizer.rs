//! CTC tokenizer with the semantics of transformers' `Wav2Vec2CTCTokenizer`:
//! a character vocabulary (`vocab.json`), the pad token as CTC blank, and
//! `|` as word delimiter.
//!
//! Decoding follows what the ASR pipeline does for CTC models
//! (`decode(ids, skip_special_tokens=False)`, `output_char_offsets`,
//! `_get_word_offsets`): repeated ids are collapsed first, then blanks are
//! removed, the delimiter becomes a space. Unlike transformers, the other
//! special tokens (`<s>`, `</s>`, `<unk>`) are then dropped instead of being
//! printed literally, runs of spaces are collapsed, and ids outside the
//! vocabulary are treated like `<unk>` (they separate repeats but produce no
//! text) instead of raising or printing `<unk>`.

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("{source_name}: invalid JSON: {detail}")]
    Json { source_name: String, detail: String },
    #[error("{source_name}: {detail}")]
    Vocab { source_name: String, detail: String },
    #[error("cannot encode {ch:?} (U+{code:04X}) at character {position} of the text: not in the vocabulary")]
    UnknownChar {
        ch: char,
        code: u32,
        position: usize,
    },
}

/// One word with its time span in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f32,
    pub end: f32,
}

/// Decoded text plus per-word timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub words: Vec<Word>,
}

/// What an id stands for once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// CTC blank.
    Blank,
    /// `<s>`, `</s>`, `<unk>` or an id outside the vocabulary: no text.
    Silent,
    /// Word delimiter: a space.
    Delimiter,
    /// Ordinary token.
    Text,
}

#[derive(Debug, Clone)]
pub struct CtcTokenizer {
    /// id → token.
    tokens: HashMap<u32, String>,
    /// token → id.
    ids: HashMap<String, u32>,
    /// Longest token, in chars (for greedy encoding of multi-char tokens).
    max_token_chars: usize,
    pad: String,
    unk: String,
    bos: String,
    eos: String,
    word_delimiter: String,
}

fn vocab_err(source: &str, detail: impl Into<String>) -> TokenizerError {
    TokenizerError::Vocab {
        source_name: source.to_string(),
        detail: detail.into(),
    }
}

impl CtcTokenizer {
    /// Parse a `vocab.json` (`{"<pad>": 0, "<s>": 1, ...}`). The nested
    /// multi-lingual form (`{"eng": {...}}`) is accepted when it holds
    /// exactly one language; use [`CtcTokenizer::from_vocab_json_lang`] to
    /// pick one of several. `source` names the file in errors.
    pub fn from_vocab_json(json: &str, source: &str) -> Result<Self, TokenizerError> {
        Self::from_vocab_json_lang(json, source, None)
    }

    /// Like [`CtcTokenizer::from_vocab_json`], choosing `lang` from a nested
    /// multi-lingual vocabulary (`lang` is ignored for a flat one).
    pub fn from_vocab_json_lang(
        json: &str,
        source: &str,
        lang: Option<&str>,
    ) -> Result<Self, TokenizerError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| TokenizerError::Json {
                source_name: source.to_string(),
                detail: e.to_string(),
            })?;
        let serde_json::Value::Object(map) = value else {
            return Err(vocab_err(
                source,
                "vocab must be a JSON object mapping tokens to ids",
            ));
        };
        if map.is_empty() {
            return Err(vocab_err(source, "vocab is empty"));
        }
        let nested = map.values().all(|v| v.is_object());
        let entries = if nested {
            let langs: Vec<&str> = map.keys().map(String::as_str).collect();
            let chosen = match lang {
                Some(l) => map.get(l).ok_or_else(|| {
                    vocab_err(
                        source,
                        format!(
                            "language {l:?} not in the vocab (has: {})",
                            langs.join(", ")
                        ),
                    )
                })?,
                None if map.len() == 1 => map
                    .values()
                    .next()
                    .ok_or_else(|| vocab_err(source, "vocab is empty"))?,
                None => {
                    return Err(vocab_err(
                        source,
                        format!(
                            "multi-lingual vocab with {} languages ({}); choose one",
                            map.len(),
                            langs.join(", ")
                        ),
                    ))
                }
            };
            match chosen {
                serde_json::Value::Object(m) => m,
                _ => return Err(vocab_err(source, "language entry is not an object")),
            }
        } else {
            &map
        };
        if entries.is_empty() {
            return Err(vocab_err(source, "vocab is empty"));
        }

        let mut tokens = HashMap::with_capacity(entries.len());
        let mut ids = HashMap::with_capacity(entries.len());
        let mut max_token_chars = 1;
        for (tok, v) in entries {
            let id = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    vocab_err(
                        source,
                        format!("token {tok:?} has id {v}, expected an integer 0..2^32"),
                    )
                })?;
            if tok.is_empty() {
                return Err(vocab_err(source, "vocab contains an empty token"));
            }
            if let Some(other) = tokens.insert(id, tok.clone()) {
                return Err(vocab_err(
                    source,
                    format!("id {id} is used by both {other:?} and {tok:?}"),
                ));
            }
            ids.insert(tok.clone(), id);
            max_token_chars = max_token_chars.max(tok.chars().count());
        }
        Ok(Self {
            tokens,
            ids,
            max_token_chars,
            pad: "<pad>".into(),
            unk: "<unk>".into(),
            bos: "<s>".into(),
            eos: "</s>".into(),
            word_delimiter: "|".into(),
        })
    }

    /// The tokenizer of a model directory: `vocab.json` with the special
    /// tokens and `target_lang` of `tokenizer_config.json` when there is
    /// one (a checkpoint fine-tuned with `[PAD]`/`[UNK]` names its blank
    /// there; without it, `<pad>` would be taken for the blank and `[PAD]`
    /// printed as text).
    pub fn from_files(vocab_json: &str, tokenizer_config_json: Option<&str>) -> Result<Self, TokenizerError> {
        const CONFIG: &str = "tokenizer_config.json";
        let config = match tokenizer_config_json {
            None => serde_json::Map::new(),
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(_) => return Err(vocab_err(CONFIG, "expected a JSON object")),
                Err(e) => return Err(TokenizerError::Json { source_name: CONFIG.into(), detail: e.to_string() }),
            },
        };
        // A token is a string or, in newer files, an AddedToken object.
        let token = |field: &str, default: &str| -> Result<String, TokenizerError> {
            match config.get(field) {
                None | Some(serde_json::Value::Null) => Ok(default.to_string()),
                Some(serde_json::Value::String(t)) => Ok(t.clone()),
                Some(v) => match v.get("content").and_then(|c| c.as_str()) {
                    Some(t) => Ok(t.to_string()),
                    None => Err(vocab_err(CONFIG, format!("field '{field}': expected a token string, found {v}"))),
                },
            }
        };
        let lang = match config.get("target_lang") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(l)) => Some(l.as_str()),
            Some(v) => return Err(vocab_err(CONFIG, format!("field 'target_lang': expected a string, found {v}"))),
        };
        let (pad, unk) = (token("pad_token", "<pad>")?, token("unk_token", "<unk>")?);
        let (bos, eos) = (token("bos_token", "<s>")?, token("eos_token", "</s>")?);
        let delimiter = token("word_delimiter_token", "|")?;
        Ok(Self::from_vocab_json_lang(vocab_json, "vocab.json", lang)?.with_special_tokens(&pad, &unk, &bos, &eos, &delimiter))
    }

    /// Override the special tokens (defaults `<pad>`, `<unk>`, `<s>`, `</s>`,
    /// `|`), e.g. from `tokenizer_config.json` / `special_tokens_map.json`.
    pub fn with_special_tokens(
        mut self,
        pad: &str,
        unk: &str,
        bos: &str,
        eos: &str,
        word_delimiter: &str,
    ) -> Self {
        self.pad = pad.to_string();
        self.unk = unk.to_string();
        self.bos = bos.to_string();
        self.eos = eos.to_string();
        self.word_delimiter = word_delimiter.to_string();
        self
    }

    /// Id of the pad token, the CTC blank. Falls back to 0 (the
    /// `pad_token_id` default of SEW-D configs) when the vocab lacks it.
    pub fn pad_id(&self) -> u32 {
        self.id(&self.pad).unwrap_or(0)
    }

    /// Id of the unknown token, if the vocab has one.
    pub fn unk_id(&self) -> Option<u32> {
        self.id(&self.unk)
    }

    /// Id of the word delimiter, if the vocab has one.
    pub fn word_delimiter_id(&self) -> Option<u32> {
        self.id(&self.word_delimiter)
    }

    /// Number of tokens in the vocab.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(&id).map(String::as_str)
    }

    pub fn id(&self, tok: &str) -> Option<u32> {
        self.ids.get(tok).copied()
    }

    fn kind(&self, id: u32) -> Kind {
        match self.tokens.get(&id) {
            None => Kind::Silent,
            Some(t) if *t == self.pad => Kind::Blank,
            Some(t) if *t == self.word_delimiter => Kind::Delimiter,
            Some(t) if *t == self.unk || *t == self.bos || *t == self.eos => Kind::Silent,
            Some(_) => Kind::Text,
        }
    }

    /// Collapse repeats and drop blanks: `(id, first frame, end frame)`
    /// for every emitted token (end exclusive), as transformers'
    /// `_compute_offsets`.
    fn groups<'a>(&'a self, ids: &'a [u32]) -> impl Iterator<Item = (u32, usize, usize)> + 'a {
        let mut start = 0usize;
        std::iter::from_fn(move || loop {
            let first = *ids.get(start)?;
            let run = ids[start..].iter().take_while(|&&i| i == first).count();
            let group = (first, start, start + run);
            start += run;
            if self.kind(first) != Kind::Blank {
                return Some(group);
            }
        })
    }

    /// Greedy CTC decoding of per-frame ids to text.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut text = String::new();
        for (id, _, _) in self.groups(ids) {
            match self.kind(id) {
                Kind::Delimiter => text.push(' '),
                Kind::Text => text.push_str(self.token(id).unwrap_or_default()),
                Kind::Blank | Kind::Silent => {}
            }
        }
        collapse_spaces(&text)
    }

    /// Decode and split into words with time spans: a word starts at the
    /// first frame of its first character and ends after the last frame of
    /// its last character, times = frame offset × `seconds_per_frame`
    /// (transformers' `output_word_offsets` / ASR pipeline
    /// `return_timestamps="word"`).
    pub fn decode_with_words(&self, ids: &[u32], seconds_per_frame: f32) -> Transcript {
        let spf = seconds_per_frame as f64;
        let mut words = Vec::new();
        let mut current: Option<(String, usize, usize)> = None;
        let finish = |w: Option<(String, usize, usize)>, words: &mut Vec<Word>| {
            if let Some((word, s, e)) = w {
                words.push(Word {
                    word,
                    start: (s as f64 * spf) as f32,
                    end: (e as f64 * spf) as f32,
                });
            }
        };
        for (id, s, e) in self.groups(ids) {
            let tok = match self.kind(id) {
                Kind::Text => self.token(id).unwrap_or_default(),
                Kind::Delimiter => {
                    finish(current.take(), &mut words);
                    continue;
                }
                Kind::Blank | Kind::Silent => continue,
            };
            // A vocab entry may itself contain spaces; treat them as breaks.
            for (i, piece) in tok.split(' ').enumerate() {
                if i > 0 {
                    finish(current.take(), &mut words);
                }
                if piece.is_empty() {
                    continue;
                }
                match current.as_mut() {
                    Some((w, _, end)) => {
                        w.push_str(piece);
                        *end = e;
                    }
                    None => current = Some((piece.to_string(), s, e)),
                }
            }
        }
        finish(current.take(), &mut words);
        Transcript {
            text: self.decode(ids),
            words,
        }
    }

    /// Text → label ids for CTC training/scoring. Runs of whitespace become
    /// one word delimiter (leading/trailing whitespace is dropped); a
    /// character missing from the vocab is looked up in the other case (so
    /// upper-case-only vocabs accept lower-case text). Multi-character vocab
    /// entries (e.g. `<unk>`) written out in the text are matched whole.
    /// Unknown characters are an error naming them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_impl(text, false)
    }

    /// Like [`CtcTokenizer::encode`], but unknown characters map to the
    /// `<unk>` id (as transformers does); still an error when the vocab has
    /// no unk token.
    pub fn encode_lossy(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_impl(text, true)
    }

    fn encode_impl(&self, text: &str, lossy: bool) -> Result<Vec<u32>, TokenizerError> {
        let chars: Vec<char> = text.chars().collect();
        let delim = self.word_delimiter_id();
        let mut out = Vec::with_capacity(chars.len());
        let mut i = 0;
        let mut pending_space = false;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                pending_space = !out.is_empty();
                i += 1;
                continue;
            }
            if pending_space {
                pending_space = false;
                match delim {
                    Some(d) => out.push(d),
                    None => {
                        // Space itself may be a token in the vocab.
                        if let Some(id) = self.id(" ") {
                            out.push(id);
                        } else if lossy && self.unk_id().is_some() {
                            out.extend(self.unk_id());
                        } else {
                            return Err(TokenizerError::UnknownChar {
                                ch: ' ',
                                code: ' ' as u32,
                                position: i.saturating_sub(1),
                            });
                        }
                    }
                }
            }
            // Longest multi-char vocab entry starting here.
            let mut matched = None;
            let longest = self.max_token_chars.min(chars.len() - i);
            for n in (2..=longest).rev() {
                let s: String = chars[i..i + n].iter().collect();
                if let Some(id) = self.id(&s) {
                    matched = Some((id, n));
                    break;
                }
            }
            if let Some((id, n)) = matched {
                out.push(id);
                i += n;
                continue;
            }
            let id = self
                .char_id(c)
                .or_else(|| if lossy { self.unk_id() } else { None });
            match id {
                Some(id) => out.push(id),
                None => {
                    return Err(TokenizerError::UnknownChar {
                        ch: c,
                        code: c as u32,
                        position: i,
                    })
                }
            }
            i += 1;
        }
        Ok(out)
    }

    fn char_id(&self, c: char) -> Option<u32> {
        let mut buf = [0u8; 4];
        if let Some(id) = self.id(c.encode_utf8(&mut buf)) {
            return Some(id);
        }
        let upper: String = c.to_uppercase().collect();
        if let Some(id) = self.id(&upper) {
            return Some(id);
        }
        let lower: String = c.to_lowercase().collect();
        self.id(&lower)
    }

    /// Greedy argmax over logits `[frames, vocab]` row-major (first maximum
    /// wins; a NaN counts as the maximum, like numpy/torch). A trailing
    /// partial row is ignored.
    pub fn argmax(logits: &[f32], vocab: usize) -> Vec<u32> {
        if vocab == 0 {
            return Vec::new();
        }
        logits
            .chunks_exact(vocab)
            .map(|row| {
                let mut best = 0usize;
                let mut best_v = row[0];
                if !best_v.is_nan() {
                    for (i, &v) in row.iter().enumerate().skip(1) {
                        if v.is_nan() {
                            best = i;
                            break;
                        }
                        if v > best_v {
                            best = i;
                            best_v = v;
                        }
                    }
                }
                best as u32
            })
            .collect()
    }
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> CtcTokenizer {
        CtcTokenizer::from_vocab_json(
            r#"{"<pad>":0,"<s>":1,"</s>":2,"<unk>":3,"|":4,"A":5,"B":6,"C":7}"#,
            "t",
        )
        .unwrap()
    }

    #[test]
    fn groups_collapse_and_drop_blank() {
        let t = tok();
        let g: Vec<_> = t.groups(&[0, 5, 5, 0, 5, 6, 6, 0]).collect();
        assert_eq!(g, vec![(5, 1, 3), (5, 4, 5), (6, 5, 7)]);
        assert!(t.groups(&[]).next().is_none());
        assert!(t.groups(&[0, 0]).next().is_none());
    }

    #[test]
    fn argmax_rows() {
        let l = [0.1, 0.5, 0.2, 3.0, 1.0, 3.0, 0.0, f32::NAN, 1.0, 9.9];
        assert_eq!(CtcTokenizer::argmax(&l, 3), vec![1, 0, 1]);
        assert!(CtcTokenizer::argmax(&l, 0).is_empty());
    }

    #[test]
    fn space_collapse() {
        assert_eq!(collapse_spaces("  a  b c "), "a b c");
        assert_eq!(collapse_spaces("   "), "");
    }
}
