//! `sewd`: transcribe, classify, dump tensors and time the SEW-D forward pass.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use sewd::audio;
use sewd::backend::cpu::Cpu;
use sewd::backend::Backend;
use sewd::model::{ModelError, Options};
use sewd::pipeline::{ModelFiles, Pipeline};
use sewd::stream::{pipeline_logits, StreamOptions, StreamSession, MAX_TRAILING_SILENCE_S, MAX_WINDOW_S};
use sewd::tokenizer::Transcript;

mod bundled;
mod serve;

use bundled::BundledModel;

#[derive(Parser)]
#[command(name = "sewd", version, about = "SEW-D speech recognition (Hugging Face checkpoints) on the CPU or GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendKind {
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Text,
    Jsonl,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputKind {
    #[value(name = "last_hidden_state")]
    LastHiddenState,
    Logits,
}

#[derive(Subcommand)]
enum Command {
    /// Transcribe WAV files with a CTC model.
    Transcribe {
        /// Model directory (Hugging Face layout); the bundled model when omitted.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendKind,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Transcribe as the demo page's microphone does: the audio arrives in 0.1 s pieces
        /// and only the streamed (final) text is printed (see --windows).
        #[arg(long)]
        stream: bool,
        /// With --stream: seconds of left context, hop, right context, the silence appended to
        /// windows that end mid-speech, and the least audio a window commits on, as any of
        /// left=4,hop=0.5,right=1,silence=0.3,min=3 (the defaults).
        #[arg(long, value_name = "KEY=SECONDS,...", value_parser = stream_windows, requires = "stream")]
        windows: Option<StreamOptions>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Classify WAV files with a sequence-classification model.
    Classify {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendKind,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write one output tensor of the forward pass as float32 .npy (batch 1).
    Forward {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        audio: PathBuf,
        #[arg(long, value_enum)]
        output: OutputKind,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendKind,
    },
    /// Time the forward pass (model loaded, one warm-up run).
    Bench {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        audio: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendKind,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Threads for the CPU backend (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// GPU only: after the timed runs (unchanged, first JSON line), open a second device
        /// with timestamp queries, run one warm-up and one profiled pass, and print the GPU
        /// time per kernel: a table on stderr and a second JSON line
        /// {"profile": [{"kernel", "dispatches", "ms"}, ...], "profiled_pass_ms", "gpu_ms", "adapter"}.
        /// Each dispatch then runs in its own compute pass, so the profiled pass is a little
        /// slower than the timed runs.
        #[arg(long)]
        profile: bool,
    },
    /// Serve the browser demo (www/, pkg/, models/) on 127.0.0.1.
    Serve {
        /// Port (default: $PORT, else 8080; 0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
        /// The sewd source tree holding www/, pkg/ and models/ (default: the current
        /// directory, else the tree the binary was built in).
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sewd: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `$body` with `$b` bound to the chosen backend.
macro_rules! on_backend {
    ($kind:expr, |$b:ident| $body:expr) => {
        match $kind {
            BackendKind::Cpu => {
                let $b = Cpu;
                $body
            }
            BackendKind::Gpu => {
                let $b = sewd::backend::gpu::Gpu::new().map_err(|e| e.to_string())?;
                $body
            }
        }
    };
}

fn run(command: Command) -> Res<()> {
    match command {
        Command::Transcribe { model, backend, format, stream, windows, files } => {
            let source = ModelSource::or_bundled(model, &bundled::DEMO_EN);
            let stream = stream.then(|| windows.unwrap_or_default());
            on_backend!(backend, |b| transcribe(b, &source, format, stream, &files))
        }
        Command::Classify { model, backend, files } => {
            let source = ModelSource::or_bundled(model, &bundled::DEMO_KWS);
            on_backend!(backend, |b| classify(b, &source, &files))
        }
        Command::Forward { model, audio, output, out, backend } => on_backend!(backend, |b| forward(b, &model, &audio, output, &out)),
        Command::Bench { model, audio, backend, runs, threads, profile } => {
            if profile && matches!(backend, BackendKind::Cpu) {
                return Err("--profile times GPU kernels with timestamp queries: use it with --backend gpu".into());
            }
            if let Some(n) = threads {
                rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|e| e.to_string())?;
            }
            // The timed runs' device is dropped before the profiled one opens.
            on_backend!(backend, |b| bench(b, &model, &audio, runs.max(1)))?;
            if profile {
                bench_profile(&model, &audio)?;
            }
            Ok(())
        }
        Command::Serve { port, root } => serve_cmd(port, root),
    }
}

fn serve_cmd(port: Option<u16>, root: Option<PathBuf>) -> Res<()> {
    let port = match (port, std::env::var("PORT")) {
        (Some(p), _) => p,
        (None, Ok(p)) if !p.is_empty() => p.parse().map_err(|_| format!("PORT={p} is not a port number"))?,
        _ => 8080,
    };
    serve::serve(port, &root.unwrap_or_else(serve::default_root))
}

/// Where a command's model comes from: a directory given with `--model`, or a model
/// compiled into the binary.
enum ModelSource {
    Dir(PathBuf),
    Bundled(&'static BundledModel),
}

impl ModelSource {
    fn describe(&self) -> String {
        match self {
            ModelSource::Dir(dir) => dir.display().to_string(),
            ModelSource::Bundled(model) => format!("bundled model {}", model.name),
        }
    }

    fn or_bundled(dir: Option<PathBuf>, bundled: &'static BundledModel) -> Self {
        dir.map_or(ModelSource::Bundled(bundled), ModelSource::Dir)
    }
}

fn load<B: Backend>(backend: B, source: &ModelSource) -> Res<Pipeline<B>> {
    let files = match source {
        ModelSource::Dir(dir) => ModelFiles::read_dir(dir).map_err(|e| e.to_string())?,
        ModelSource::Bundled(model) => model.files()?,
    };
    Pipeline::new(backend, &files).map_err(|e| format!("{}: {e}", source.describe()))
}

fn read_audio(path: &Path) -> Res<audio::Audio> {
    audio::read_wav_file(path).map_err(|e| e.to_string())
}

fn transcribe<B: Backend>(backend: B, model: &ModelSource, format: Format, stream: Option<StreamOptions>, files: &[PathBuf]) -> Res<()> {
    let pipe = load(backend, model)?;
    pipe.ctc_tokenizer().map_err(|e| format!("{}: {e}", model.describe()))?;
    for file in files {
        let audio = read_audio(file)?;
        let seconds = audio.samples.len() as f64 / audio.sample_rate as f64;
        let t = match stream {
            Some(opts) => streamed(&pipe, audio, opts),
            None => pipe.transcribe(audio),
        };
        let t = t.map_err(|e| format!("{}: {e}", file.display()))?;
        match format {
            Format::Text => println!("{}", t.text),
            Format::Jsonl => {
                let words: Vec<_> = t
                    .words
                    .iter()
                    .map(|w| serde_json::json!({"word": w.word, "start": round3(w.start), "end": round3(w.end)}))
                    .collect();
                let line = serde_json::json!({"file": file.display().to_string(), "text": t.text, "words": words, "seconds": round3(seconds as f32)});
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// `--windows left=4,hop=0.5`: stream options by name, in seconds; the others keep their defaults.
fn stream_windows(s: &str) -> Result<StreamOptions, String> {
    let mut o = StreamOptions::default();
    for pair in s.split(',') {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("{pair:?}: expected KEY=SECONDS, e.g. right=2"))?;
        let v: f32 = value.trim().parse().map_err(|_| format!("{key}={value}: {value:?} is not a number of seconds"))?;
        let (field, max) = match key.trim() {
            "left" => (&mut o.left_context_s, MAX_WINDOW_S),
            "hop" => (&mut o.hop_s, MAX_WINDOW_S),
            "right" => (&mut o.right_context_s, MAX_WINDOW_S),
            "silence" => (&mut o.trailing_silence_s, MAX_TRAILING_SILENCE_S),
            "min" => (&mut o.min_window_s, MAX_WINDOW_S),
            k => return Err(format!("{k:?}: not a stream option (left, hop, right, silence, min)")),
        };
        if !(0.0..=max).contains(&v) {
            return Err(format!("{key}={value}: must be between 0 and {max} seconds"));
        }
        *field = v;
    }
    Ok(o)
}

/// The final text of a stream fed `audio` 0.1 s at a time.
fn streamed<B: Backend>(pipe: &Pipeline<B>, audio: audio::Audio, opts: StreamOptions) -> sewd::Result<Transcript> {
    let mut session = StreamSession::for_pipeline(pipe, opts)?;
    let mut logits = pipeline_logits(pipe);
    let mut words = Vec::new();
    let piece = (audio.sample_rate as usize / 10).max(1);
    for chunk in audio.samples.chunks(piece) {
        words.extend(session.push(chunk, audio.sample_rate, &mut logits)?.into_iter().flat_map(|u| u.final_words));
    }
    words.extend(session.finish(&mut logits)?.into_iter().flat_map(|u| u.final_words));
    let text = words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ");
    Ok(Transcript { text, words })
}

fn round3(x: f32) -> f64 {
    (x as f64 * 1000.0).round() / 1000.0
}

fn classify<B: Backend>(backend: B, model: &ModelSource, files: &[PathBuf]) -> Res<()> {
    let pipe = load(backend, model)?;
    for file in files {
        let c = pipe.classify(read_audio(file)?).map_err(|e| format!("{}: {e}", file.display()))?;
        println!("{}\t{}\t{:.4}", file.display(), c.label, c.score);
    }
    Ok(())
}

fn forward<B: Backend>(backend: B, dir: &Path, wav: &Path, output: OutputKind, out: &Path) -> Res<()> {
    let pipe = load(backend, &ModelSource::Dir(dir.to_path_buf()))?;
    let samples = pipe.prepare(read_audio(wav)?).map_err(|e| format!("{}: {e}", wav.display()))?;
    let result = pipe.forward(&samples, Options::default()).map_err(|e| format!("{}: {e}", wav.display()))?;
    let tensor = match output {
        OutputKind::LastHiddenState => result.last_hidden_state,
        OutputKind::Logits => result.logits.ok_or_else(|| ModelError::NoHead("logits").to_string())?,
    };
    let t = pipe.download(&tensor).map_err(|e| e.to_string())?;
    std::fs::write(out, sewd::npy::to_bytes(&t.shape, &t.data)).map_err(|e| format!("{}: {e}", out.display()))
}

fn bench<B: Backend>(backend: B, dir: &Path, wav: &Path, runs: usize) -> Res<()> {
    let name = backend.name();
    let pipe = load(backend, &ModelSource::Dir(dir.to_path_buf()))?;
    let audio = read_audio(wav)?;
    let audio_s = audio.samples.len() as f64 / audio.sample_rate as f64;
    let in_wav = |e: String| format!("{}: {e}", wav.display());
    let samples = pipe.prepare(audio).map_err(|e| in_wav(e.to_string()))?;
    let pass = || timed_pass(&pipe, &samples).map_err(in_wav);
    pass()?;
    let (mut times, mut records) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        let (ms, record_ms) = pass()?;
        eprintln!("run {}: {ms:.1} ms", i + 1);
        times.push(ms);
        records.push(record_ms);
    }
    let (median, record) = (median(&mut times), median(&mut records));
    let line = serde_json::json!({
        "backend": name,
        "median_ms": (median * 100.0).round() / 100.0,
        // GPU: the host's time to record the pass (nothing runs before the read-back
        // submits it); CPU: the whole pass. The GPU's fixed cost per pass shows here.
        "record_ms": (record * 100.0).round() / 100.0,
        "audio_s": (audio_s * 1000.0).round() / 1000.0,
        "rtf": (median / 1000.0 / audio_s * 10000.0).round() / 10000.0,
    });
    println!("{line}");
    Ok(())
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

/// One forward pass in wall milliseconds, and the part of it spent before the
/// read-back (on the GPU backend: recording the pass on the host).
fn timed_pass<B: Backend>(pipe: &Pipeline<B>, samples: &[f32]) -> Res<(f64, f64)> {
    let start = Instant::now();
    let out = pipe.forward(samples, Options::default()).map_err(|e| e.to_string())?;
    let record_ms = start.elapsed().as_secs_f64() * 1000.0;
    // Reading the result back makes GPU timings include the whole pass.
    pipe.download(out.logits.as_ref().unwrap_or(&out.last_hidden_state)).map_err(|e| e.to_string())?;
    Ok((start.elapsed().as_secs_f64() * 1000.0, record_ms))
}

/// `bench --profile`: one warm-up and one pass on a device with timestamp
/// queries; the GPU time per kernel as a table (stderr) and a JSON line.
fn bench_profile(dir: &Path, wav: &Path) -> Res<()> {
    let gpu = sewd::backend::gpu::Gpu::new_profiled().map_err(|e| e.to_string())?;
    let adapter = gpu.adapter_name().to_string();
    let pipe = load(gpu, &ModelSource::Dir(dir.to_path_buf()))?;
    let audio = read_audio(wav)?;
    let audio_s = audio.samples.len() as f64 / audio.sample_rate as f64;
    let in_wav = |e: String| format!("{}: {e}", wav.display());
    let samples = pipe.prepare(audio).map_err(|e| in_wav(e.to_string()))?;
    timed_pass(&pipe, &samples).map_err(in_wav)?;
    // The warm-up's timings (first use of every pipeline) are dropped.
    pipe.backend.take_profile().map_err(|e| e.to_string())?;
    let (pass_ms, _) = timed_pass(&pipe, &samples).map_err(in_wav)?;
    let profile = pipe.backend.take_profile().map_err(|e| e.to_string())?;
    let gpu_ms: f64 = profile.iter().map(|k| k.ms).sum();
    let dispatches: u64 = profile.iter().map(|k| k.dispatches).sum();

    eprintln!("GPU kernel profile on {adapter}: one pass over {audio_s:.2} s of audio, {pass_ms:.1} ms wall (profiled), {gpu_ms:.2} ms in {dispatches} dispatches");
    let width = profile.iter().map(|k| k.label.len()).max().unwrap_or(0).max("kernel".len());
    eprintln!("  {:<width$}  {:>10}  {:>10}  {:>6}  {:>10}", "kernel", "dispatches", "ms", "%", "us/disp");
    for k in &profile {
        let share = if gpu_ms > 0.0 { k.ms / gpu_ms * 100.0 } else { 0.0 };
        eprintln!("  {:<width$}  {:>10}  {:>10.3}  {:>6.1}  {:>10.1}", k.label, k.dispatches, k.ms, share, k.ms * 1000.0 / k.dispatches.max(1) as f64);
    }
    let round = |x: f64, digits: i32| {
        let f = 10f64.powi(digits);
        (x * f).round() / f
    };
    let rows: Vec<_> = profile.iter().map(|k| serde_json::json!({"kernel": k.label, "dispatches": k.dispatches, "ms": round(k.ms, 4)})).collect();
    let line = serde_json::json!({
        "profile": rows,
        "profiled_pass_ms": round(pass_ms, 2),
        "gpu_ms": round(gpu_ms, 3),
        "adapter": adapter,
    });
    println!("{line}");
    Ok(())
}
