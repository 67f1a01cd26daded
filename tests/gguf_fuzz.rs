//! Mutation fuzzing of the GGUF loader: a small synthetic llama GGUF, mutated at random (bytes
//! flipped, counts and lengths set to extreme values, cut short, chunks repeated), must load or
//! fail with an error naming the file; never panic, and never ask for more memory than a small
//! factor of the file's size. `JOULEBENCH_FUZZ_SECONDS` sets how long it runs (default 15 s);
//! the counts are printed.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use joulebench::engine::models::{LoadOptions, load_gguf};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records the largest single allocation; refuses (aborting the test) any above 2 GiB.
struct Watch;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
const REFUSE: usize = 2 << 30;

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        if l.size() > REFUSE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        if n > REFUSE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Watch = Watch;

/// A tiny llama GGUF (2 layers, hidden 32, 4 heads, 2 KV heads, 64 tokens), valid and loadable.
fn tiny_gguf() -> Vec<u8> {
    let dev = Device::Cpu;
    let (e, ff, vocab, hd, kv) = (32usize, 64usize, 64usize, 8usize, 2usize);
    let t = |rows: usize, cols: usize, seed: f32| {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.1)
            .collect();
        let x = Tensor::from_vec(data, (rows, cols), &dev).unwrap();
        QTensor::quantize(&x, GgmlDType::F32).unwrap()
    };
    let v1 = |n: usize| {
        let x = Tensor::ones(n, candle_core::DType::F32, &dev).unwrap();
        QTensor::quantize(&x, GgmlDType::F32).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), t(vocab, e, 0.1)),
        ("output_norm.weight".into(), v1(e)),
    ];
    for i in 0..2 {
        let p = |n: &str| format!("blk.{i}.{n}.weight");
        tensors.push((p("attn_norm"), v1(e)));
        tensors.push((p("attn_q"), t(e, e, 1.0)));
        tensors.push((p("attn_k"), t(kv * hd, e, 2.0)));
        tensors.push((p("attn_v"), t(kv * hd, e, 3.0)));
        tensors.push((p("attn_output"), t(e, e, 4.0)));
        tensors.push((p("ffn_norm"), v1(e)));
        tensors.push((p("ffn_gate"), t(ff, e, 5.0)));
        tensors.push((p("ffn_up"), t(ff, e, 6.0)));
        tensors.push((p("ffn_down"), t(e, ff, 7.0)));
    }
    let tokens: Vec<Value> = (0..vocab)
        .map(|i| Value::String(format!("{}", (b'a' + (i % 26) as u8) as char).repeat(1 + i / 26)))
        .collect();
    let meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(2)),
        ("llama.embedding_length", Value::U32(e as u32)),
        ("llama.feed_forward_length", Value::U32(ff as u32)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(kv as u32)),
        ("llama.context_length", Value::U32(128)),
        ("llama.rope.dimension_count", Value::U32(hd as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a a".into())]),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ];
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta_refs, &t_refs).unwrap();
    out.into_inner()
}

/// xorshift64*: a fixed, fast sequence per case seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EXTREMES: [u64; 9] = [
    0,
    1,
    u32::MAX as u64,
    1 << 32,
    (1 << 32) + 1,
    1 << 40,
    1 << 60,
    u64::MAX,
    u64::MAX / 2,
];

/// One mutant of `base`: most mutations land in the header (the first `header` bytes).
fn mutate(base: &[u8], header: usize, rng: &mut Rng) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if rng.below(10) < 8 {
            rng.below(header.min(v.len()))
        } else {
            rng.below(v.len())
        };
        match rng.below(6) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = rng.next() as u8,
            2 if at + 8 <= v.len() => {
                let x = EXTREMES[rng.below(EXTREMES.len())];
                v[at..at + 8].copy_from_slice(&x.to_le_bytes());
            }
            3 if at + 4 <= v.len() => {
                let x = EXTREMES[rng.below(EXTREMES.len())] as u32;
                v[at..at + 4].copy_from_slice(&x.to_le_bytes());
            }
            4 => v.truncate(at.max(1)),
            _ => {
                let n = rng.below(64).min(v.len() - at);
                let chunk = v[at..at + n].to_vec();
                v.splice(at..at, chunk);
            }
        }
        if v.is_empty() {
            break;
        }
    }
    v
}

/// Seeds that found a bug (an over-allocation or a panic) on some machine, kept as regressions.
const FOUND: [u64; 3] = [
    7083408667327657473,
    12560764036777489353,
    2497129875557653241,
];

/// The allocation watch is process-wide, and the other tests of this binary load real models
/// beside it: the fuzzing runs in a child process of this same binary that runs nothing else.
#[test]
fn mutated_gguf_files_load_or_fail_clearly_never_panic_or_overallocate() {
    const NAME: &str =
        "gguf_fuzz::mutated_gguf_files_load_or_fail_clearly_never_panic_or_overallocate";
    if std::env::var_os("JOULEBENCH_FUZZ_CHILD").is_some() {
        return fuzz();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("JOULEBENCH_FUZZ_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", text.trim_end());
    assert!(
        out.status.success(),
        "the fuzzing process failed: {}",
        out.status
    );
    assert!(
        text.contains("gguf fuzz:"),
        "the fuzzing process ran no fuzzing"
    );
}

fn fuzz() {
    let base = tiny_gguf();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.gguf");
    std::fs::write(&path, &base).unwrap();
    // The unmutated file loads: the fuzzer starts from something real.
    let opts = LoadOptions::default();
    if let Err(e) = load_gguf(&path, "fuzz", &opts, &Device::Cpu) {
        panic!("the base file does not load: {e}");
    }
    let header = base.len().min(4096);
    let secs: f64 = std::env::var("JOULEBENCH_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15.0);
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let (mut tried, mut loaded, mut refused, mut unnamed) = (0u64, 0u64, 0u64, 0u64);
    let mut panics: Vec<u64> = Vec::new();
    let mut over: Vec<(u64, usize, usize)> = Vec::new();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Seeds that once found a bug are tried first, every run; `JOULEBENCH_FUZZ_SEEDS` (comma
    // separated) replays only the seeds it names.
    let replay: Option<Vec<u64>> = std::env::var("JOULEBENCH_FUZZ_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let mut fixed: Vec<u64> = replay.clone().unwrap_or_else(|| FOUND.to_vec());
    fixed.reverse();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        let seed = match fixed.pop() {
            Some(s) => s,
            None if replay.is_none() && std::time::Instant::now() < end => {
                seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                seed
            }
            None => break,
        };
        let mut rng = Rng(seed | 1);
        let m = mutate(&base, header, &mut rng);
        std::fs::write(&path, &m).unwrap();
        LARGEST.store(0, Ordering::Relaxed);
        let r = std::panic::catch_unwind(|| load_gguf(&path, "fuzz", &opts, &Device::Cpu));
        let largest = LARGEST.load(Ordering::Relaxed);
        tried += 1;
        // The loader dequantizes to f32 (4x a quantized file at most) and builds caches; more
        // than 16x the file plus 64 MiB means a size came from the header unchecked.
        if largest > 16 * m.len() + (64 << 20) {
            over.push((seed, m.len(), largest));
        }
        match r {
            Err(_) => panics.push(seed),
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(e)) => {
                refused += 1;
                if !e.to_string().contains("fuzz.gguf") {
                    unnamed += 1;
                    if unnamed <= 3 {
                        eprintln!("error without the file name: {e}");
                    }
                }
            }
        }
    }
    std::panic::set_hook(quiet);
    eprintln!(
        "gguf fuzz: {tried} inputs in {secs} s: {loaded} loaded, {refused} refused with an error, \
         {} panics, {} over-allocations, {unnamed} errors without the file name",
        panics.len(),
        over.len()
    );
    assert!(tried > 50 || replay.is_some(), "only {tried} inputs");
    assert!(
        panics.is_empty(),
        "panics for seeds {:?}",
        &panics[..panics.len().min(10)]
    );
    assert!(
        over.is_empty(),
        "over-allocations (seed, file size, bytes): {:?}",
        &over[..over.len().min(10)]
    );
    assert_eq!(unnamed, 0, "every error names the file");
}
