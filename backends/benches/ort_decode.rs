//! Greedy decode throughput of the ONNX Runtime backend (or candle), to run side by side with
//! `benches/ort_python_decode.py` at the repository root, which drives the same `model.onnx`
//! from Python's `onnxruntime` with the same threads, prompts and token counts.
//!
//! ```text
//! cargo bench -p tcobench-backends --bench ort_decode -- --model small --prompt-len 32 --new-tokens 64
//! python3 benches/ort_python_decode.py --model-dir <printed model dir> --prompt-len 32 --new-tokens 64
//! ```
//!
//! Options: `--model tiny|small|1b|8b|DIR` (built-in models are materialised, with their
//! `model.onnx`, under the cache root: `$TCOBENCH_CACHE`, else `$XDG_CACHE_HOME/tcobench`, else
//! `~/.cache/tcobench`), `--seed N`, `--backend onnxruntime|candle`, `--batch N`,
//! `--prompt-len N`, `--new-tokens N`, `--reps N`, `--warmup N`, `--intra N`, `--inter N`.
//! Prompt token `i` of sequence `r` is `(3 + 37·i + 101·r) mod vocab_size`. Decode throughput is
//! `batch · (new_tokens − 1)` tokens over the time from the first token to the last; the median
//! over repetitions is printed, with the prefill time, as one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use tcobench_backends::model::{resolve, ModelSource};
use tcobench_backends::onnx::ensure_onnx;
use tcobench_backends::{
    Backend, BuiltinModel, CandleBackend, DType, Device, OrtBackend, OrtRuntime, OrtThreads,
    Request,
};

struct Options {
    model: String,
    seed: u64,
    backend: String,
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    reps: usize,
    warmup: usize,
    threads: OrtThreads,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        model: "tiny".to_owned(),
        seed: 0,
        backend: "onnxruntime".to_owned(),
        batch: 1,
        prompt_len: 32,
        new_tokens: 64,
        reps: 5,
        warmup: 1,
        threads: OrtThreads::default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--bench" {
            continue; // added by `cargo bench`
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--model" => o.model = value.clone(),
            "--seed" => o.seed = number()? as u64,
            "--backend" => o.backend = value.clone(),
            "--batch" => o.batch = number()?,
            "--prompt-len" => o.prompt_len = number()?,
            "--new-tokens" => o.new_tokens = number()?,
            "--reps" => o.reps = number()?,
            "--warmup" => o.warmup = number()?,
            "--intra" => o.threads.intra = number()?,
            "--inter" => o.threads.inter = number()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("TCOBENCH_CACHE") {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("tcobench")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    let root = cache_root();
    let source = match o.model.parse::<BuiltinModel>() {
        Ok(model) => ModelSource::Builtin {
            model,
            seed: o.seed,
        },
        Err(_) => ModelSource::Dir(PathBuf::from(&o.model)),
    };
    let dir = resolve(&source, &root.join("models"))?;
    let onnx = ensure_onnx(&dir)?;
    eprintln!("model dir: {}", dir.display());

    let mut backend: Box<dyn Backend> = match o.backend.as_str() {
        "onnxruntime" => {
            let runtime = OrtRuntime::init(&root)?;
            eprintln!(
                "onnxruntime {} from {}",
                runtime.version(),
                runtime.library().path.display()
            );
            Box::new(OrtBackend::load(
                runtime,
                &dir,
                Device::Cpu,
                DType::F32,
                o.threads,
            )?)
        }
        "candle" => Box::new(CandleBackend::load(&dir, Device::Cpu, DType::F32)?),
        other => return Err(format!("unknown backend {other}").into()),
    };
    let vocab = backend.config().vocab_size;
    let prompts: Vec<Vec<u32>> = (0..o.batch)
        .map(|r| {
            (0..o.prompt_len)
                .map(|i| ((3 + 37 * i + 101 * r) % vocab) as u32)
                .collect()
        })
        .collect();
    let request = Request {
        prompts,
        new_tokens: o.new_tokens,
    };

    let (mut prefill_ms, mut decode_tps) = (Vec::new(), Vec::new());
    let mut first_tokens = Vec::new();
    for rep in 0..o.warmup + o.reps {
        let start = Instant::now();
        let mut first = None;
        let generation = backend.generate(&request, &mut |step: usize| {
            if step == 0 {
                first = Some(Instant::now());
            }
        })?;
        let end = Instant::now();
        let first = first.expect("at least one token");
        if rep >= o.warmup {
            prefill_ms.push((first - start).as_secs_f64() * 1e3);
            let decoded = (o.batch * (o.new_tokens - 1)) as f64;
            decode_tps.push(decoded / (end - first).as_secs_f64());
        }
        first_tokens = generation.tokens[0].iter().take(8).copied().collect();
    }
    println!(
        "{}",
        serde_json::json!({
            "side": "rust",
            "backend": backend.name(),
            "model": onnx.display().to_string(),
            "batch": o.batch,
            "prompt_len": o.prompt_len,
            "new_tokens": o.new_tokens,
            "intra_threads": o.threads.intra,
            "inter_threads": o.threads.inter,
            "reps": o.reps,
            "prefill_ms_median": median(prefill_ms),
            "decode_tokens_per_s_median": median(decode_tps),
            "first_tokens": first_tokens,
        })
    );
    Ok(())
}
