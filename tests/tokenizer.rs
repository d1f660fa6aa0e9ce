//! CTC tokenizer. Expected outputs marked "transformers" were produced by
//! transformers 5.24 `Wav2Vec2CTCTokenizer(vocab.json).decode(ids,
//! output_word_offsets=True)` with the 32-symbol vocab below.

use sewd::tokenizer::{CtcTokenizer, TokenizerError, Word};

const SYMBOLS: &str =
    "<pad> <s> </s> <unk> | E T A O N I H S R D L U M W C F G Y P B V K ' X J Q Z";

fn vocab_json() -> String {
    let entries: Vec<String> = SYMBOLS
        .split(' ')
        .enumerate()
        .map(|(i, t)| format!("{}:{i}", serde_json::to_string(t).unwrap()))
        .collect();
    format!("{{{}}}", entries.join(","))
}

fn tok() -> CtcTokenizer {
    CtcTokenizer::from_vocab_json(&vocab_json(), "vocab.json").unwrap()
}

/// Frame string → ids: '_' is the blank, other characters are tokens.
fn frames(s: &str) -> Vec<u32> {
    let t = tok();
    s.chars()
        .map(|c| {
            if c == '_' {
                0
            } else {
                t.id(&c.to_string()).unwrap()
            }
        })
        .collect()
}

/// Words as (text, start frame, end frame) with 1 s per frame.
fn word_frames(ids: &[u32]) -> Vec<(String, f32, f32)> {
    tok()
        .decode_with_words(ids, 1.0)
        .words
        .into_iter()
        .map(|w| (w.word, w.start, w.end))
        .collect()
}

fn w(word: &str, s: f32, e: f32) -> (String, f32, f32) {
    (word.to_string(), s, e)
}

#[test]
fn vocab_basics() {
    let t = tok();
    assert_eq!(t.len(), 32);
    assert_eq!(t.pad_id(), 0);
    assert_eq!(t.id("|"), Some(4));
    assert_eq!(t.id("'"), Some(27));
    assert_eq!(t.token(31), Some("Z"));
    assert_eq!(t.token(32), None);
    assert_eq!(t.id("a"), None);
}

#[test]
fn decode_matches_transformers() {
    let t = tok();
    // (frames, transformers text)
    let cases = [
        ("__HH_EE_LL_LL_OO__|_WW_O_RR_LL_D_", "HELLO WORLD"),
        ("HELLO", "HELO"),
        ("H_E_L_L_O", "HELLO"),
        ("HHEELLLLOO", "HELO"),
        ("|||A|||", "A"),
        ("IT'S__A|__TEST", "IT'SA TEST"),
        ("__", ""),
        ("", ""),
        ("A|B|C", "A B C"),
        ("K_I_N_G||Q_U_E_E_N", "KING QUEEN"),
    ];
    for (f, want) in cases {
        assert_eq!(t.decode(&frames(f)), want, "{f}");
    }
    // transformers gives "A  B" (two spaces, delimiters split by a blank);
    // runs of spaces are collapsed here.
    assert_eq!(t.decode(&frames("_|__A_|_|_B__|")), "A B");
}

#[test]
fn word_offsets_match_transformers() {
    assert_eq!(
        word_frames(&frames("__HH_EE_LL_LL_OO__|_WW_O_RR_LL_D_")),
        vec![w("HELLO", 2.0, 16.0), w("WORLD", 20.0, 32.0)]
    );
    assert_eq!(word_frames(&frames("HELLO")), vec![w("HELO", 0.0, 5.0)]);
    assert_eq!(word_frames(&frames("|||A|||")), vec![w("A", 3.0, 4.0)]);
    assert_eq!(
        word_frames(&frames("_|__A_|_|_B__|")),
        vec![w("A", 4.0, 5.0), w("B", 10.0, 11.0)]
    );
    assert_eq!(
        word_frames(&frames("IT'S__A|__TEST")),
        vec![w("IT'SA", 0.0, 7.0), w("TEST", 10.0, 14.0)]
    );
    assert_eq!(
        word_frames(&frames("K_I_N_G||Q_U_E_E_N")),
        vec![w("KING", 0.0, 7.0), w("QUEEN", 9.0, 18.0)]
    );
    assert_eq!(
        word_frames(&frames("A|B|C")),
        vec![w("A", 0.0, 1.0), w("B", 2.0, 3.0), w("C", 4.0, 5.0)]
    );
    assert!(word_frames(&frames("__")).is_empty());
    assert!(word_frames(&[]).is_empty());
}

#[test]
fn word_times_in_seconds() {
    // SEW-D: 320 samples per frame at 16 kHz = 20 ms. transformers' pipeline
    // (return_timestamps="word") gives (0.04, 0.32) and (0.4, 0.64).
    let tr = tok().decode_with_words(&frames("__HH_EE_LL_LL_OO__|_WW_O_RR_LL_D_"), 0.02);
    assert_eq!(tr.text, "HELLO WORLD");
    let want = [("HELLO", 0.04, 0.32), ("WORLD", 0.40, 0.64)];
    assert_eq!(tr.words.len(), 2);
    for (Word { word, start, end }, (ww, ws, we)) in tr.words.iter().zip(want) {
        assert_eq!(word, ww);
        assert!(
            (start - ws).abs() < 1e-6 && (end - we).abs() < 1e-6,
            "{word}: {start}..{end}"
        );
    }
}

#[test]
fn special_tokens_are_dropped_after_collapsing() {
    let t = tok();
    // transformers prints the specials: "<s>AA</s>", "A<unk>A", "A<s>A".
    // Here they vanish, but still separate repeated characters.
    assert_eq!(t.decode(&[1, 7, 7, 0, 7, 2]), "AA");
    assert_eq!(t.decode(&[7, 3, 7]), "AA");
    assert_eq!(t.decode(&[7, 1, 7]), "AA");
    assert_eq!(word_frames(&[1, 7, 7, 0, 7, 2]), vec![w("AA", 1.0, 5.0)]);
    assert_eq!(
        word_frames(&[7, 3, 7, 4, 24]),
        vec![w("AA", 0.0, 3.0), w("B", 4.0, 5.0)]
    );
}

#[test]
fn out_of_range_ids_are_skipped() {
    let t = tok();
    // transformers maps unknown ids to "<unk>" ("A<unk>A").
    assert_eq!(t.decode(&[7, 99, 7]), "AA");
    assert_eq!(t.decode(&[u32::MAX, 11, 11, 1000, 10]), "HI");
    assert_eq!(word_frames(&[7, 99, 7]), vec![w("AA", 0.0, 3.0)]);
}

#[test]
fn argmax_then_decode() {
    let t = tok();
    let v = t.len();
    let path = frames("_HH_I|_");
    let mut logits = vec![0.0f32; path.len() * v];
    for (f, &id) in path.iter().enumerate() {
        logits[f * v + id as usize] = 5.0;
        logits[f * v + 31] = 1.0;
    }
    let ids = CtcTokenizer::argmax(&logits, v);
    assert_eq!(ids, path);
    assert_eq!(t.decode(&ids), "HI");
}

#[test]
fn encode_for_ctc_labels() {
    let t = tok();
    // transformers: tokenizer("HELLO WORLD").input_ids
    assert_eq!(
        t.encode("HELLO WORLD").unwrap(),
        vec![11, 5, 15, 15, 8, 4, 18, 8, 13, 15, 14]
    );
    // Lower case is upper-cased for an upper-case vocab; whitespace runs
    // become one delimiter, ends are trimmed.
    assert_eq!(
        t.encode("  it's   a\ttest ").unwrap(),
        t.encode("IT'S A TEST").unwrap()
    );
    assert_eq!(t.encode("it's a").unwrap(), vec![10, 6, 27, 12, 4, 7]);
    assert_eq!(t.encode("").unwrap(), Vec::<u32>::new());
    // Multi-character tokens written out are matched whole.
    assert_eq!(t.encode("A<unk>B").unwrap(), vec![7, 3, 24]);
    match t.encode("NAÏVE 1") {
        Err(TokenizerError::UnknownChar { ch, position, .. }) => {
            assert_eq!((ch, position), ('Ï', 2));
        }
        other => panic!("{other:?}"),
    }
    let msg = t.encode("A1").unwrap_err().to_string();
    assert!(msg.contains("'1'"), "{msg}");
    assert_eq!(t.encode_lossy("A1 B").unwrap(), vec![7, 3, 4, 24]);
    // Round trip.
    let ids = t.encode("THE QUICK BROWN FOX").unwrap();
    assert_eq!(t.decode(&ids), "THE QUICK BROWN FOX");
}

#[test]
fn nested_and_custom_vocabs() {
    let nested = format!("{{\"eng\": {}}}", vocab_json());
    let t = CtcTokenizer::from_vocab_json(&nested, "vocab.json").unwrap();
    assert_eq!(t.len(), 32);
    assert_eq!(t.decode(&frames("H_I")), "HI");

    let two = format!("{{\"eng\": {0}, \"fra\": {0}}}", vocab_json());
    let e = CtcTokenizer::from_vocab_json(&two, "vocab.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vocab.json") && e.contains("eng") && e.contains("fra"),
        "{e}"
    );
    let t = CtcTokenizer::from_vocab_json_lang(&two, "vocab.json", Some("fra")).unwrap();
    assert_eq!(t.len(), 32);

    // Other special-token spellings.
    let t = CtcTokenizer::from_vocab_json(r#"{"[PAD]":0,"[UNK]":1," ":2,"a":3,"b":4}"#, "v")
        .unwrap()
        .with_special_tokens("[PAD]", "[UNK]", "<s>", "</s>", " ");
    assert_eq!(t.pad_id(), 0);
    assert_eq!(t.decode(&[3, 3, 0, 3, 2, 1, 4, 2]), "aa b");
    assert_eq!(t.encode("AB ab").unwrap(), vec![3, 4, 2, 3, 4]);
    let tr = t.decode_with_words(&[3, 3, 0, 3, 2, 1, 4, 2], 0.5);
    assert_eq!(
        tr.words,
        vec![
            Word {
                word: "aa".into(),
                start: 0.0,
                end: 2.0
            },
            Word {
                word: "b".into(),
                start: 3.0,
                end: 3.5
            }
        ]
    );
}

#[test]
fn bad_vocab_files() {
    let err = |j: &str| {
        CtcTokenizer::from_vocab_json(j, "bad/vocab.json")
            .unwrap_err()
            .to_string()
    };
    assert!(err("{not json").starts_with("bad/vocab.json: invalid JSON"));
    assert!(err("[1,2]").contains("JSON object"));
    assert!(err("{}").contains("empty"));
    assert!(err(r#"{"a": -1}"#).contains("\"a\""));
    assert!(err(r#"{"a": 1.5}"#).contains("\"a\""));
    let e = err(r#"{"a": 1, "b": 1}"#);
    assert!(
        e.contains("id 1") && e.contains("\"a\"") && e.contains("\"b\""),
        "{e}"
    );
}
