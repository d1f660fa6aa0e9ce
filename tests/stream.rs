//! Streaming (src/stream.rs) against offline transcription, on the CPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sewd::audio::{self, Audio};
use sewd::backend::cpu::Cpu;
use sewd::pipeline::Pipeline;
use sewd::stream::{pipeline_logits, StreamModel, StreamOptions, StreamSession, Update};
use sewd::tokenizer::{CtcTokenizer, Word};
use sewd::weights::TensorData;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn clip(name: &str) -> Audio {
    audio::read_wav_file(&fixtures().join(name)).unwrap()
}

fn fixture_pipeline() -> Pipeline<Cpu> {
    Pipeline::load_dir(Cpu, &fixtures().join("ctc_group_both_shared")).unwrap()
}

fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (x != y) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// (character error rate, word error rate) of `got` against `want`.
fn error_rates(got: &str, want: &str) -> (f64, f64) {
    let gc: Vec<char> = got.chars().collect();
    let wc: Vec<char> = want.chars().collect();
    let gw: Vec<&str> = got.split_whitespace().collect();
    let ww: Vec<&str> = want.split_whitespace().collect();
    (
        levenshtein(&gc, &wc) as f64 / wc.len().max(1) as f64,
        levenshtein(&gw, &ww) as f64 / ww.len().max(1) as f64,
    )
}

/// Everything a session emitted: final words in order and the checks that
/// hold for every stream.
#[derive(Default)]
struct Collected {
    words: Vec<Word>,
    finals: Vec<String>,
    partials: usize,
    done: bool,
}

impl Collected {
    fn take(&mut self, updates: Vec<Update>) {
        for u in updates {
            assert!(!self.done, "update after done");
            assert_eq!(u.final_text, u.final_words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" "));
            for w in &u.final_words {
                if let Some(last) = self.words.last() {
                    assert!(w.start >= last.start, "final words out of order: {last:?} then {w:?}");
                }
                assert!(w.end > w.start);
            }
            if !u.final_text.is_empty() {
                self.finals.push(u.final_text.clone());
            }
            self.words.extend(u.final_words);
            self.partials += 1;
            self.done |= u.done;
        }
    }
    fn text(&self) -> String {
        self.words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ")
    }
}

fn push_in_chunks<F>(s: &mut StreamSession, samples: &[f32], rate: u32, chunk: usize, logits: &mut F, out: &mut Collected)
where
    F: FnMut(&[f32]) -> sewd::Result<TensorData>,
{
    for c in samples.chunks(chunk) {
        out.take(s.push(c, rate, &mut *logits).unwrap());
    }
    out.take(s.finish(&mut *logits).unwrap());
    assert!(out.done && s.is_done());
}

/// A model whose frame `j` depends only on the input samples of that frame
/// (not on the window): streaming must reproduce offline decoding exactly,
/// which checks the window arithmetic, seams, resampling and the decoder.
fn context_free_logits(samples: &[f32]) -> sewd::Result<TensorData> {
    let vocab = 32;
    let frames = if samples.len() < 400 { 0 } else { (samples.len() - 400) / 320 + 1 };
    let mut data = vec![0f32; frames * vocab];
    for j in 0..frames {
        let w = &samples[j * 320..j * 320 + 400];
        let e: f32 = w.iter().map(|v| v * v).sum::<f32>() / 400.0;
        let zc = w.windows(2).filter(|p| (p[0] >= 0.0) != (p[1] >= 0.0)).count();
        // Silence → blank, otherwise a letter or the delimiter from the energy and zero crossings.
        let h = zc / 6 + (e.sqrt() * 20.0) as usize;
        let id = if e < 1e-4 {
            0
        } else if h.is_multiple_of(5) {
            4
        } else {
            5 + h % 27
        };
        data[j * vocab + id] = 1.0;
    }
    Ok(TensorData { shape: vec![frames, vocab], data })
}

fn context_free_model() -> StreamModel {
    StreamModel {
        sample_rate: 16_000,
        samples_per_frame: 320,
        align: 640,
        min_samples: 720,
        conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
        conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
        normalize: false,
        vocab_size: 32,
    }
}

#[test]
fn context_free_model_streams_exactly_like_offline() {
    let p = fixture_pipeline();
    let tok: &CtcTokenizer = p.tokenizer.as_ref().unwrap();
    let a = clip("speech_16s.wav");
    for (rate, chunk) in [(16_000u32, 1234usize), (44_100, 1234), (48_000, 4800), (16_000, 100_000), (8_000, 333)] {
        let input = audio::resample(&a.samples, 16_000, rate).unwrap();
        let at16k = audio::resample(&input, rate, 16_000).unwrap();
        let offline = {
            let t = context_free_logits(&at16k).unwrap();
            tok.decode_with_words(&CtcTokenizer::argmax(&t.data, 32), 320.0 / 16_000.0)
        };
        assert!(offline.words.len() > 20, "the fake model should produce words: {:?}", offline.text);
        let mut s = StreamSession::new(context_free_model(), tok, StreamOptions::default()).unwrap();
        let mut got = Collected::default();
        push_in_chunks(&mut s, &input, rate, chunk, &mut context_free_logits, &mut got);
        assert_eq!(got.text(), offline.text, "{rate} Hz, chunks of {chunk}");
        assert_eq!(got.words, offline.words, "{rate} Hz, chunks of {chunk}: word times");
        assert!(got.finals.len() > 5, "text should become final as the stream goes, not only at the end");
    }
}

/// The silence appended to every window but the last is never read: a fake
/// model that writes "Z" wherever it sees only zeros (and nowhere else) must
/// stream exactly what it decodes offline, with no "Z" in any partial either.
#[test]
fn trailing_silence_is_never_committed_or_shown() {
    const MARK: usize = 31; // "Z" in the fixture vocabulary
    let p = fixture_pipeline();
    let tok: &CtcTokenizer = p.tokenizer.as_ref().unwrap();
    assert_eq!(tok.decode(&[MARK as u32]), "Z");
    let mut marked = |samples: &[f32]| -> sewd::Result<TensorData> {
        let mut t = context_free_logits(samples)?;
        for (j, row) in t.data.chunks_mut(32).enumerate() {
            if row[MARK] == 1.0 {
                row.swap(MARK, MARK - 1);
            }
            if samples[j * 320..j * 320 + 400].iter().all(|&v| v == 0.0) {
                row.fill(0.0);
                row[MARK] = 1.0;
            }
        }
        Ok(t)
    };
    // No exact zeros in the audio itself.
    let a = clip("speech_16s.wav");
    let input: Vec<f32> = a.samples.iter().enumerate().map(|(i, v)| v + 1e-3 * (1.0 + (i as f32).sin())).collect();
    let offline = {
        let t = marked(&input).unwrap();
        tok.decode_with_words(&CtcTokenizer::argmax(&t.data, 32), 320.0 / 16_000.0)
    };
    assert!(!offline.text.contains('Z') && offline.words.len() > 20, "{}", offline.text);
    for silence in [0.3, 1.0] {
        let opts = StreamOptions { trailing_silence_s: silence, ..Default::default() };
        let mut s = StreamSession::new(context_free_model(), tok, opts).unwrap();
        let mut partials = Vec::new();
        let mut got = Collected::default();
        for c in input.chunks(1234) {
            let u = s.push(c, 16_000, &mut marked).unwrap();
            partials.extend(u.iter().map(|u| u.partial.clone()));
            got.take(u);
        }
        got.take(s.finish(&mut marked).unwrap());
        assert_eq!(got.text(), offline.text, "trailing silence {silence} s");
        assert!(partials.len() > 20, "windows ran before the end");
        assert!(partials.iter().all(|p| !p.contains('Z')), "a partial shows the silence: {partials:?}");
    }
    // The fake model does see the silence: without it no window ends in zeros.
    let mut s = StreamSession::new(context_free_model(), tok, StreamOptions::default()).unwrap();
    s.push_audio(&input[..48_000], 16_000).unwrap();
    let w = s.next_window().unwrap();
    assert!(!w.last && w.samples.len() > 4800 && w.samples[w.samples.len() - 4800..].iter().all(|&v| v == 0.0));
}

/// Until a window can span `min_window_s` of audio the stream shows partial
/// text only; the first committing window then commits everything up to its
/// right context, and the previews change no final text.
#[test]
fn short_windows_give_partials_until_the_minimum() {
    let p = fixture_pipeline();
    let a = clip("speech_16s.wav");
    let opts = StreamOptions { min_window_s: 3.0, ..Default::default() };
    let mut s = StreamSession::for_pipeline(&p, opts).unwrap();
    let mut logits = pipeline_logits(&p);
    let mut got = Collected::default();
    let mut partials = Vec::new(); // (seconds pushed, partial text)
    let mut first_commit = None; // (seconds pushed, seconds committed)
    for (k, c) in a.samples.chunks(1600).enumerate() {
        let pushed = (k + 1) as f64 * 0.1;
        let u = s.push(c, 16_000, &mut logits).unwrap();
        if first_commit.is_none() {
            if s.committed_seconds() > 0.0 {
                first_commit = Some((pushed, s.committed_seconds()));
            } else {
                partials.extend(u.iter().map(|u| (pushed, u.partial.clone())));
            }
        }
        got.take(u);
    }
    got.take(s.finish(&mut logits).unwrap());
    let (at, committed) = first_commit.expect("frames committed before the end");
    assert!((3.0..3.15).contains(&at), "the first commit came after {at} s of audio, not once 3 s had arrived");
    // 3 s of window less 1 s of right context.
    assert!((committed - 2.0).abs() < 0.05, "the first window committed {committed} s");
    assert!(partials.len() >= 3 && partials.iter().all(|(_, t)| !t.is_empty()), "a partial per hop before 3 s: {partials:?}");
    assert!(partials[0].0 <= 1.6, "the first partial came after {} s", partials[0].0);

    // Run late (every window at finish, so no previews): the same final text and word times.
    let mut s = StreamSession::for_pipeline(&p, opts).unwrap();
    let mut late = Collected::default();
    s.push_audio(&a.samples, 16_000).unwrap();
    late.take(s.finish(pipeline_logits(&p)).unwrap());
    assert!(!late.text().is_empty());
    assert_eq!(late.text(), got.text(), "previews must not change the final text");
    assert_eq!(late.words, got.words);

    // A preview whose model run failed is handed out again.
    let mut s = StreamSession::for_pipeline(&p, opts).unwrap();
    s.push_audio(&a.samples[..24_000], 16_000).unwrap();
    let w = s.next_window().expect("a preview at 1.5 s");
    let len = w.samples.len();
    s.abandon(w);
    assert_eq!(s.next_window().map(|w| w.samples.len()), Some(len), "the abandoned preview comes back");
}

#[test]
fn fixture_model_stream_vs_offline() {
    let p = fixture_pipeline();
    let a = clip("speech_16s.wav");
    let offline = p.transcribe(a.clone()).unwrap();
    let mut report = Vec::new();
    for (rate, chunk, opts) in [
        (16_000u32, 1234usize, StreamOptions::default()),
        (44_100, 1234, StreamOptions::default()),
        (16_000, 1600, StreamOptions { left_context_s: 8.0, hop_s: 0.5, right_context_s: 2.0, ..Default::default() }),
        (16_000, 1600, StreamOptions { left_context_s: 30.0, hop_s: 1.0, right_context_s: 4.0, ..Default::default() }),
        (16_000, 1600, StreamOptions { left_context_s: 30.0, hop_s: 1.0, right_context_s: 30.0, ..Default::default() }),
    ] {
        let input = audio::resample(&a.samples, 16_000, rate).unwrap();
        let mut s = StreamSession::for_pipeline(&p, opts).unwrap();
        let mut got = Collected::default();
        push_in_chunks(&mut s, &input, rate, chunk, &mut pipeline_logits(&p), &mut got);
        let (cer, wer) = error_rates(&got.text(), &offline.text);
        report.push(format!("{rate} Hz chunks {chunk} {opts:?}: CER {:.1}% WER {:.1}%", cer * 100.0, wer * 100.0));
        eprintln!("{}\n  stream : {}\n  offline: {}", report.last().unwrap(), got.text(), offline.text);
        // Random weights amplify every change of context; the bound is loose
        // on purpose (measured values are printed above).
        assert!(cer < 0.35, "{}", report.last().unwrap());
        if opts.right_context_s >= 30.0 {
            // No window is ready before the end: one window over the whole clip.
            assert_eq!(got.text(), offline.text);
        }
        let last = got.words.last().unwrap();
        assert!((last.end - offline.words.last().unwrap().end).abs() < 0.5, "absolute word times: {last:?}");
    }
    eprintln!("{}", report.join("\n"));
}

/// The bundled English model (trained by `training/`, committed under `models/`).
#[test]
#[ignore = "models/sewd-demo-en is not accurate enough yet (test-set CER 4.8%): on this 16 s clip, longer than anything it was trained on, its offline and streamed (5.5 s windows) transcripts differ by 8.7% CER, mostly words run together across pauses; run with --ignored once it meets its goal"]
fn demo_model_stream_vs_offline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sewd-demo-en");
    let p: Pipeline<Cpu> = Pipeline::load_dir(Cpu, &dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
    let a = clip("speech_16s.wav");
    let offline = p.transcribe(a.clone()).unwrap();
    // An empty transcript would make the comparison below pass vacuously.
    assert!(
        offline.text.split_whitespace().count() >= 10,
        "models/sewd-demo-en transcribes speech_16s.wav as {:?}: the model does not recognize speech, so streaming cannot be compared with it",
        offline.text
    );
    let mut s = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let mut got = Collected::default();
    push_in_chunks(&mut s, &a.samples, 16_000, 1234, &mut pipeline_logits(&p), &mut got);
    let (cer, wer) = error_rates(&got.text(), &offline.text);
    eprintln!("sewd-demo-en: CER {:.1}% WER {:.1}%\n  stream : {}\n  offline: {}", cer * 100.0, wer * 100.0, got.text(), offline.text);
    assert!(cer < 0.05 && wer < 0.15, "streamed transcript too far from offline: CER {cer:.3} WER {wer:.3}");
}

#[test]
fn ten_minutes_stay_flat() {
    let p = fixture_pipeline();
    let a = clip("speech_16s.wav");
    let rate = 44_100;
    let piece = audio::resample(&a.samples, 16_000, rate).unwrap();
    let total = rate as usize * 600;
    let mut s = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let mut hop_times: Vec<(f64, f64)> = Vec::new(); // (session time s, hop seconds)
    let mut longest_window = 0usize;
    let mut max_buffered = 0usize;
    let mut words = 0usize;
    let mut logits = pipeline_logits(&p);
    let mut pushed = 0usize;
    let mut chunk = vec![0f32; 1234];
    while pushed < total {
        let n = chunk.len().min(total - pushed);
        for (i, v) in chunk[..n].iter_mut().enumerate() {
            *v = piece[(pushed + i) % piece.len()];
        }
        s.push_audio(&chunk[..n], rate).unwrap();
        pushed += n;
        while let Some(w) = s.next_window() {
            longest_window = longest_window.max(w.samples.len());
            let t0 = Instant::now();
            let u = s.run_window(w, &mut logits).unwrap();
            hop_times.push((s.committed_seconds(), t0.elapsed().as_secs_f64()));
            words += u.final_words.len();
        }
        max_buffered = max_buffered.max(s.buffered_samples());
    }
    let last = s.finish(&mut logits).unwrap();
    words += last.iter().map(|u| u.final_words.len()).sum::<usize>();
    assert!(s.committed_seconds() > 599.0, "committed {} s", s.committed_seconds());

    // (10th percentile, median, hops) of the hop times in one minute of the session.
    let minute = |from: f64| {
        let mut v: Vec<f64> = hop_times.iter().filter(|(t, _)| *t > from && *t <= from + 60.0).map(|(_, d)| *d).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 10], v[v.len() / 2], v.len())
    };
    let (first_fast, first_median, n1) = minute(0.0);
    let (last_fast, last_median, n2) = minute(539.0);
    eprintln!(
        "{} hops, {words} final words; first minute: {n1} hops, 10th percentile {:.2} ms, median {:.2} ms; last minute: {n2} hops, {:.2} ms, {:.2} ms; longest window {longest_window} samples; max buffered {max_buffered} samples",
        hop_times.len(),
        first_fast * 1e3,
        first_median * 1e3,
        last_fast * 1e3,
        last_median * 1e3
    );
    // The model's work per hop is bounded: no window is longer than left + hop + right
    // context plus one frame of alignment and the trailing silence, however long the
    // session runs.
    let window_bound = 16_000 * 4 + 8_000 + 16_000 + 640 + 4_800;
    assert!(longest_window <= window_bound, "a window of {longest_window} samples (bound {window_bound})");
    // And so is the rest of a hop's cost (bookkeeping that grew with the transcript would
    // show here). The fast hops of each minute are compared, not the median: the machine
    // may be shared, and load stalls many hops of one minute but rarely the fastest tenth.
    assert!(last_fast < 2.0 * first_fast, "hop time grew: {first_fast} s → {last_fast} s (10th percentile)");
    // left (4 s) + alignment + hop + right + one resampler chunk of output.
    let bound = 16_000 * 4 + 640 + 8_000 + 16_000 + 2_000;
    assert!(max_buffered <= bound, "buffer grew to {max_buffered} samples (bound {bound})");
    // Random weights rarely emit the word delimiter; words still become final.
    assert!(words > 10, "only {words} final words in 10 minutes");
}

#[test]
fn bad_pushes_and_short_sessions() {
    let p = fixture_pipeline();
    let mut s = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    s.push(&[0.1; 1000], 44_100, pipeline_logits(&p)).unwrap();
    let e = s.push(&[0.1; 1000], 48_000, pipeline_logits(&p)).unwrap_err().to_string();
    assert!(e.contains("sample rate changed from 44100 Hz to 48000 Hz"), "{e}");
    let e = s.push(&[0.1, f32::NAN], 44_100, pipeline_logits(&p)).unwrap_err().to_string();
    assert!(e.contains("sample 1 is NaN"), "{e}");
    // 1000 samples at 44.1 kHz are shorter than one frame's receptive field... of the
    // whole model (min_samples), so the session ends with no text and no error.
    let u = s.finish(pipeline_logits(&p)).unwrap();
    assert!(u.last().unwrap().done && u.iter().all(|u| u.final_text.is_empty()));
    assert!(s.push(&[0.0; 10], 44_100, pipeline_logits(&p)).is_err(), "push after finish");

    // An empty session.
    let mut s = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    assert!(s.finish(pipeline_logits(&p)).unwrap().last().unwrap().done);

    // Options are checked.
    let bad = StreamOptions { hop_s: f32::NAN, ..Default::default() };
    assert!(StreamSession::for_pipeline(&p, bad).unwrap_err().to_string().contains("hop"));
    let bad = StreamOptions { trailing_silence_s: 20.0, ..Default::default() };
    let e = StreamSession::for_pipeline(&p, bad).unwrap_err().to_string();
    assert!(e.contains("trailingSilence must be between 0 and 10 seconds, got 20"), "{e}");
    let bad = StreamOptions { min_window_s: -1.0, ..Default::default() };
    let e = StreamSession::for_pipeline(&p, bad).unwrap_err().to_string();
    assert!(e.contains("minWindow must be between 0 and 600 seconds, got -1"), "{e}");

    // A classifier cannot stream.
    let c: Pipeline<Cpu> = Pipeline::load_dir(Cpu, &fixtures().join("cls_mean")).unwrap();
    assert!(StreamSession::for_pipeline(&c, StreamOptions::default()).is_err());

    // A failing model run leaves the session usable: the window comes back.
    let mut s = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let a = clip("speech_3s.wav");
    let mut fail = |_: &[f32]| -> sewd::Result<TensorData> { Err(sewd::model::ModelError::Input("boom".into()).into()) };
    assert!(s.push(&a.samples, 16_000, &mut fail).is_err());
    let mut got = Collected::default();
    got.take(s.finish(pipeline_logits(&p)).unwrap());
    assert!(got.done);
}

/// Windows are the same whenever they run: buffering everything first and
/// running the model only at `finish` gives the same transcript and word
/// times as running it on every push (the browser stream runs windows in
/// the background, so it may fall behind).
#[test]
fn late_model_runs_give_the_same_result() {
    let p = fixture_pipeline();
    let a = clip("speech_16s.wav");
    let mut eager = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let mut want = Collected::default();
    push_in_chunks(&mut eager, &a.samples, 16_000, 1234, &mut pipeline_logits(&p), &mut want);

    let mut lazy = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    for c in a.samples.chunks(1234) {
        lazy.push_audio(c, 16_000).unwrap();
    }
    let mut got = Collected::default();
    got.take(lazy.finish(pipeline_logits(&p)).unwrap());
    assert_eq!(got.words, want.words);
    assert!(got.partials > 20, "the late run still goes hop by hop ({} updates)", got.partials);
}

/// A model run that fails partway through a push loses nothing: the updates
/// of the windows that ran before it come with the next call, and the failed
/// window runs again, so the words match a session that never failed. (The
/// bundled model, whose output has word breaks: the fixture model's
/// gibberish makes two long words, both final only at the end.)
#[test]
fn a_failed_window_keeps_the_updates_before_it() {
    let p: Pipeline<Cpu> = Pipeline::load_dir(Cpu, &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sewd-demo-en")).unwrap();
    let a = clip("speech_16s.wav");
    const FAILING_RUN: usize = 12;
    let mut clean = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let updates = clean.push(&a.samples, 16_000, pipeline_logits(&p)).unwrap();
    let before: usize = updates[..FAILING_RUN - 1].iter().map(|u| u.final_words.len()).sum();
    assert!(before > 0, "the windows before the failing one commit no words: the test would prove nothing");
    let mut want = Collected::default();
    want.take(updates);
    want.take(clean.finish(pipeline_logits(&p)).unwrap());

    let mut s = StreamSession::for_pipeline(&p, StreamOptions::default()).unwrap();
    let (mut runs, mut ok) = (0, pipeline_logits(&p));
    let mut one_fails = |x: &[f32]| {
        runs += 1;
        if runs == FAILING_RUN { Err(sewd::model::ModelError::Input("boom".into()).into()) } else { ok(x) }
    };
    assert!(s.push(&a.samples, 16_000, &mut one_fails).is_err());
    let mut got = Collected::default();
    got.take(s.finish(pipeline_logits(&p)).unwrap());
    assert_eq!(got.words, want.words);
}
