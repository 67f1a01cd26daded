//! `models synth`: GGUF files with seeded random weights in the exact tensor shapes of a known
//! architecture, in a chosen format, so energy per token can be measured for real model sizes
//! without their weights (energy depends on shapes and format, not on weight values).
//!
//! Weights are drawn directly in the format's block layout (random codes, scales chosen so values
//! stay within about ±0.05), one block row at a time: nothing is ever held in f32 beyond one row,
//! so an 8B-shaped file is written in the memory of a few megabytes. The file is written beside
//! its destination and renamed into place, says it is synthetic in its metadata
//! (`joulebench.synthetic`), and carries a byte-level vocabulary of the architecture's size.

use crate::engine::kernels::matvec::QFormat;
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Tensor shapes of a known architecture.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    pub arch: &'static str,
    pub layers: usize,
    pub hidden: usize,
    pub ff: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_theta: f32,
    pub tied: bool,
}

const fn shape(
    name: &'static str,
    arch: &'static str,
    dims: [usize; 7],
    rope_theta: f32,
    tied: bool,
) -> Shape {
    Shape {
        name,
        arch,
        layers: dims[0],
        hidden: dims[1],
        ff: dims[2],
        heads: dims[3],
        kv_heads: dims[4],
        vocab: dims[5],
        context: dims[6],
        rope_theta,
        tied,
    }
}

/// The architectures `--like` knows: [layers, hidden, ff, heads, kv heads, vocab, context].
pub const SHAPES: &[Shape] = &[
    shape(
        "smollm2-135m",
        "llama",
        [30, 576, 1536, 9, 3, 49152, 8192],
        1e5,
        true,
    ),
    shape(
        "smollm2-360m",
        "llama",
        [32, 960, 2560, 15, 5, 49152, 8192],
        1e5,
        true,
    ),
    shape(
        "smollm2-1.7b",
        "llama",
        [24, 2048, 8192, 32, 32, 49152, 8192],
        1.3e5,
        true,
    ),
    shape(
        "llama-3.2-1b",
        "llama",
        [16, 2048, 8192, 32, 8, 128256, 131072],
        5e5,
        true,
    ),
    shape(
        "llama-3.2-3b",
        "llama",
        [28, 3072, 8192, 24, 8, 128256, 131072],
        5e5,
        true,
    ),
    shape(
        "llama-3.1-8b",
        "llama",
        [32, 4096, 14336, 32, 8, 128256, 131072],
        5e5,
        false,
    ),
    shape(
        "qwen2.5-0.5b",
        "qwen2",
        [24, 896, 4864, 14, 2, 151936, 32768],
        1e6,
        true,
    ),
    shape(
        "qwen2.5-1.5b",
        "qwen2",
        [28, 1536, 8960, 12, 2, 151936, 32768],
        1e6,
        true,
    ),
    shape(
        "qwen2.5-7b",
        "qwen2",
        [28, 3584, 18944, 28, 4, 152064, 32768],
        1e6,
        false,
    ),
];

/// The shape named `name` (case-insensitive; `SmolLM2-135M` works).
pub fn lookup(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// Formats `--format` takes: block formats, and llama.cpp's mixes (`Q4_K_M`, `Q5_K_M`).
pub const FORMATS: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, \
                           Q6_K, Q4_K_M, Q5_K_M";

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub bytes: u64,
    pub tensors: usize,
    pub parameters: u64,
}

/// A synth failure: what and where.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown architecture {0:?}; known: {known}", known = SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))]
    UnknownShape(String),
    #[error("unknown format {0:?}; known: {FORMATS}")]
    UnknownFormat(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// GGML type id of a format.
fn ggml_type(f: QFormat) -> u32 {
    match f {
        QFormat::F32 => 0,
        QFormat::F16 => 1,
        QFormat::Q4_0 => 2,
        QFormat::Q4_1 => 3,
        QFormat::Q5_0 => 6,
        QFormat::Q5_1 => 7,
        QFormat::Q8_0 => 8,
        QFormat::Q2K => 10,
        QFormat::Q3K => 11,
        QFormat::Q4K => 12,
        QFormat::Q5K => 13,
        QFormat::Q6K => 14,
        QFormat::BF16 => 30,
    }
}

/// llama.cpp's `general.file_type` number of a format name (plain K formats: their `_S` mix).
fn file_type(s: &str) -> u32 {
    let up = s.to_ascii_uppercase();
    let name = match up.as_str() {
        "Q3_K" => "Q3_K_S",
        "Q4_K" => "Q4_K_S",
        "Q5_K" => "Q5_K_S",
        other => other,
    };
    super::FILE_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(32, |(k, _)| *k)
}

fn parse_format(s: &str) -> Option<(QFormat, Option<QFormat>)> {
    let f = match s.to_ascii_uppercase().as_str() {
        "F32" => QFormat::F32,
        "F16" => QFormat::F16,
        "BF16" => QFormat::BF16,
        "Q4_0" => QFormat::Q4_0,
        "Q4_1" => QFormat::Q4_1,
        "Q5_0" => QFormat::Q5_0,
        "Q5_1" => QFormat::Q5_1,
        "Q8_0" => QFormat::Q8_0,
        "Q2_K" => QFormat::Q2K,
        "Q3_K" => QFormat::Q3K,
        "Q4_K" => QFormat::Q4K,
        "Q5_K" => QFormat::Q5K,
        "Q6_K" => QFormat::Q6K,
        "Q4_K_M" => return Some((QFormat::Q4K, Some(QFormat::Q6K))),
        "Q5_K_M" => return Some((QFormat::Q5K, Some(QFormat::Q6K))),
        _ => return None,
    };
    Some((f, None))
}

/// One tensor to write: name, GGUF dims (innermost first), format.
struct Tensor {
    name: String,
    dims: Vec<usize>,
    format: QFormat,
}

impl Tensor {
    fn bytes(&self) -> u64 {
        let (bv, bb) = self.format.block();
        let n: usize = self.dims.iter().product();
        (n / bv * bb) as u64
    }
}

/// The format a matrix of row length `cols` gets: the wanted one, or llama.cpp's fallback when
/// the rows cannot hold whole 256-value super-blocks.
fn fit(f: QFormat, cols: usize) -> QFormat {
    if cols.is_multiple_of(f.block().0) {
        return f;
    }
    match f {
        QFormat::Q4K => QFormat::Q5_0,
        QFormat::Q5K => QFormat::Q5_1,
        QFormat::Q6K => QFormat::Q8_0,
        _ => QFormat::Q4_0,
    }
}

/// The tensor list of `s` in `base` format, with `more` (the `_M` mixes) on the output matrix and
/// on attn_v / ffn_down of the layers llama.cpp gives more bits to.
fn tensors(s: &Shape, base: QFormat, more: Option<QFormat>) -> Vec<Tensor> {
    let hd = s.hidden / s.heads;
    let (q, kv) = (s.heads * hd, s.kv_heads * hd);
    let mut out = Vec::new();
    let mat = |name: String, rows: usize, cols: usize, f: QFormat| Tensor {
        name,
        dims: vec![cols, rows],
        format: if f.is_float() { f } else { fit(f, cols) },
    };
    let vec1 = |name: String, n: usize| Tensor {
        name,
        dims: vec![n],
        format: QFormat::F32,
    };
    let head = more.unwrap_or(base);
    out.push(mat(
        "token_embd.weight".into(),
        s.vocab,
        s.hidden,
        if s.tied { head } else { base },
    ));
    let n = s.layers;
    for i in 0..n {
        let more_bits = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        let lf = if more_bits { head } else { base };
        let b = |t: &str| format!("blk.{i}.{t}");
        out.push(vec1(b("attn_norm.weight"), s.hidden));
        out.push(mat(b("attn_q.weight"), q, s.hidden, base));
        out.push(mat(b("attn_k.weight"), kv, s.hidden, base));
        out.push(mat(b("attn_v.weight"), kv, s.hidden, lf));
        if s.arch == "qwen2" {
            out.push(vec1(b("attn_q.bias"), q));
            out.push(vec1(b("attn_k.bias"), kv));
            out.push(vec1(b("attn_v.bias"), kv));
        }
        out.push(mat(b("attn_output.weight"), s.hidden, q, base));
        out.push(vec1(b("ffn_norm.weight"), s.hidden));
        out.push(mat(b("ffn_gate.weight"), s.ff, s.hidden, base));
        out.push(mat(b("ffn_up.weight"), s.ff, s.hidden, base));
        out.push(mat(b("ffn_down.weight"), s.hidden, s.ff, lf));
    }
    out.push(vec1("output_norm.weight".into(), s.hidden));
    if !s.tied {
        out.push(mat("output.weight".into(), s.vocab, s.hidden, head));
    }
    out
}

/// Fills one block of format `f` with random codes and scales that keep values within ~±0.05.
fn random_block(f: QFormat, rng: &mut StdRng, b: &mut [u8]) {
    rng.fill_bytes(b);
    let h = |v: f32| half::f16::from_f32(v).to_le_bytes();
    let mut put = |at: usize, v: f32| b[at..at + 2].copy_from_slice(&h(v));
    match f {
        QFormat::Q4_0 => put(0, 0.005),
        QFormat::Q4_1 => {
            put(0, 0.005);
            put(2, -0.04);
        }
        QFormat::Q5_0 => put(0, 0.0025),
        QFormat::Q5_1 => {
            put(0, 0.0025);
            put(2, -0.04);
        }
        QFormat::Q8_0 => put(0, 0.0003),
        QFormat::Q2K => {
            put(80, 0.001);
            put(82, 0.001);
        }
        QFormat::Q3K => put(108, 0.0005),
        QFormat::Q4K => {
            put(0, 0.0001);
            put(2, 0.0001);
        }
        QFormat::Q5K => {
            put(0, 0.00005);
            put(2, 0.0001);
        }
        QFormat::Q6K => put(208, 0.00002),
        QFormat::F16 | QFormat::BF16 | QFormat::F32 => {
            let (bv, _) = f.block();
            for i in 0..bv {
                let v: f32 = rng.random_range(-0.035..0.035);
                match f {
                    QFormat::F16 => b[2 * i..2 * i + 2].copy_from_slice(&h(v)),
                    QFormat::BF16 => {
                        b[2 * i..2 * i + 2].copy_from_slice(&half::bf16::from_f32(v).to_le_bytes())
                    }
                    _ => b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes()),
                }
            }
        }
    }
}

/// GGUF metadata values this writer emits.
enum Val {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_val(w: &mut impl Write, v: &Val) -> std::io::Result<()> {
    match v {
        Val::U32(x) => {
            w.write_all(&4u32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Val::F32(x) => {
            w.write_all(&6u32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Val::Bool(x) => {
            w.write_all(&7u32.to_le_bytes())?;
            w.write_all(&[*x as u8])
        }
        Val::Str(s) => {
            w.write_all(&8u32.to_le_bytes())?;
            put_str(w, s)
        }
        Val::Strs(a) => {
            w.write_all(&9u32.to_le_bytes())?;
            w.write_all(&8u32.to_le_bytes())?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|s| put_str(w, s))
        }
        Val::I32s(a) => {
            w.write_all(&9u32.to_le_bytes())?;
            w.write_all(&5u32.to_le_bytes())?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

/// A byte-level vocabulary of `n` tokens: the 256 byte symbols, an end-of-text token, fillers.
fn vocabulary(n: usize) -> (Vec<String>, Vec<i32>) {
    let mut bytes: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    bytes.sort_unstable();
    let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    let mut types = vec![1; tokens.len()];
    tokens.push("<|endoftext|>".into());
    types.push(3);
    while tokens.len() < n {
        tokens.push(format!("<synth_{}>", tokens.len()));
        types.push(1);
    }
    tokens.truncate(n);
    types.truncate(n);
    (tokens, types)
}

const ALIGN: u64 = 32;

/// The metadata of a synthetic file of shape `s` in `format`.
fn metadata(s: &Shape, format: &str, seed: u64) -> Vec<(String, Val)> {
    let a = s.arch;
    let (tokens, types) = vocabulary(s.vocab);
    let u = |v: usize| Val::U32(v as u32);
    vec![
        ("general.architecture".into(), Val::Str(a.into())),
        (
            "general.name".into(),
            Val::Str(format!("synthetic {}", s.name)),
        ),
        (
            "general.basename".into(),
            Val::Str(format!("synthetic-{}", s.name)),
        ),
        ("general.alignment".into(), Val::U32(ALIGN as u32)),
        ("general.file_type".into(), Val::U32(file_type(format))),
        (
            "joulebench.synthetic.format".into(),
            Val::Str(format.to_ascii_uppercase()),
        ),
        ("joulebench.synthetic".into(), Val::Bool(true)),
        ("joulebench.synthetic.like".into(), Val::Str(s.name.into())),
        (
            "joulebench.synthetic.seed".into(),
            Val::Str(seed.to_string()),
        ),
        (format!("{a}.block_count"), u(s.layers)),
        (format!("{a}.embedding_length"), u(s.hidden)),
        (format!("{a}.feed_forward_length"), u(s.ff)),
        (format!("{a}.attention.head_count"), u(s.heads)),
        (format!("{a}.attention.head_count_kv"), u(s.kv_heads)),
        (format!("{a}.context_length"), u(s.context)),
        (format!("{a}.rope.freq_base"), Val::F32(s.rope_theta)),
        (format!("{a}.rope.dimension_count"), u(s.hidden / s.heads)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Val::F32(1e-5),
        ),
        (format!("{a}.vocab_size"), u(s.vocab)),
        ("tokenizer.ggml.model".into(), Val::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Val::Str("default".into())),
        ("tokenizer.ggml.tokens".into(), Val::Strs(tokens)),
        ("tokenizer.ggml.token_type".into(), Val::I32s(types)),
        ("tokenizer.ggml.merges".into(), Val::Strs(Vec::new())),
        ("tokenizer.ggml.eos_token_id".into(), Val::U32(256)),
        ("tokenizer.ggml.bos_token_id".into(), Val::U32(256)),
    ]
}

/// The header: magic, version, counts, metadata, tensor infos with aligned offsets, padding.
fn header(meta: &[(String, Val)], ts: &[Tensor]) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    head.write_all(b"GGUF")?;
    head.write_all(&3u32.to_le_bytes())?;
    head.write_all(&(ts.len() as u64).to_le_bytes())?;
    head.write_all(&(meta.len() as u64).to_le_bytes())?;
    for (k, v) in meta {
        put_str(&mut head, k)?;
        put_val(&mut head, v)?;
    }
    let mut off = 0u64;
    for t in ts {
        put_str(&mut head, &t.name)?;
        head.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            head.write_all(&(*d as u64).to_le_bytes())?;
        }
        head.write_all(&ggml_type(t.format).to_le_bytes())?;
        head.write_all(&off.to_le_bytes())?;
        off += t.bytes().div_ceil(ALIGN) * ALIGN;
    }
    let pad = (ALIGN - head.len() as u64 % ALIGN) % ALIGN;
    head.extend(std::iter::repeat_n(0u8, pad as usize));
    Ok(head)
}

/// Writes tensor `t`'s data, one block row at a time, then its alignment padding; returns the
/// bytes written.
fn tensor_data(
    w: &mut impl Write,
    t: &Tensor,
    rng: &mut StdRng,
    row: &mut Vec<u8>,
) -> std::io::Result<u64> {
    let (bv, bb) = t.format.block();
    let n: usize = t.dims.iter().product();
    if t.dims.len() == 1 {
        // Norm weights 1, biases small: a model whose activations stay finite.
        let v = if t.name.ends_with(".bias") {
            0.01f32
        } else {
            1.0
        };
        for _ in 0..n {
            w.write_all(&v.to_le_bytes())?;
        }
    } else {
        let mut block = [0u8; 256];
        let per_row = t.dims[0] / bv;
        for _ in 0..t.dims[1] {
            row.clear();
            for _ in 0..per_row {
                random_block(t.format, rng, &mut block[..bb]);
                row.extend_from_slice(&block[..bb]);
            }
            w.write_all(row)?;
        }
    }
    let written = t.bytes();
    let pad = written.div_ceil(ALIGN) * ALIGN - written;
    w.write_all(&vec![0u8; pad as usize])?;
    Ok(written + pad)
}

/// Writes a synthetic GGUF file of architecture `like` in `format` to `out`; `progress` hears
/// about each layer.
pub fn write(
    like: &str,
    format: &str,
    seed: u64,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Written, SynthError> {
    let s = lookup(like).ok_or_else(|| SynthError::UnknownShape(like.into()))?;
    let (base, more) =
        parse_format(format).ok_or_else(|| SynthError::UnknownFormat(format.into()))?;
    let ts = tensors(s, base, more);
    let meta = metadata(s, format, seed);
    let io = |e| SynthError::Io {
        path: out.to_path_buf(),
        source: e,
    };
    let tmp = out.with_extension("gguf.partial");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let head = header(&meta, &ts).map_err(io)?;
    w.write_all(&head).map_err(io)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = head.len() as u64;
    let mut params = 0u64;
    let mut row = Vec::new();
    for t in &ts {
        if t.name.ends_with(".attn_norm.weight") {
            progress(&format!(
                "writing {}",
                t.name.trim_end_matches(".attn_norm.weight")
            ));
        }
        params += t.dims.iter().product::<usize>() as u64;
        total += tensor_data(&mut w, t, &mut rng, &mut row).map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(Written {
        bytes: total,
        tensors: ts.len(),
        parameters: params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_published_parameter_counts() {
        // Published sizes, within 3% (norms and biases aside).
        for (name, billions) in [
            ("smollm2-135m", 0.135),
            ("smollm2-360m", 0.362),
            ("smollm2-1.7b", 1.71),
            ("llama-3.2-1b", 1.24),
            ("llama-3.2-3b", 3.21),
            ("llama-3.1-8b", 8.03),
            ("qwen2.5-0.5b", 0.494),
            ("qwen2.5-1.5b", 1.54),
            ("qwen2.5-7b", 7.62),
        ] {
            let s = lookup(name).unwrap();
            let n: usize = tensors(s, QFormat::Q8_0, None)
                .iter()
                .map(|t| t.dims.iter().product::<usize>())
                .sum();
            let got = n as f64 / 1e9;
            assert!(
                (got / billions - 1.0).abs() < 0.03,
                "{name}: {got} vs {billions}"
            );
        }
    }

    #[test]
    fn mixes_follow_llama_cpp_fallbacks() {
        let s = lookup("SmolLM2-135M").unwrap();
        let ts = tensors(s, QFormat::Q4K, Some(QFormat::Q6K));
        let f = |n: &str| ts.iter().find(|t| t.name == n).unwrap().format;
        // 576-wide rows cannot hold 256-value super-blocks: Q5_0 and Q8_0, as llama.cpp does.
        assert_eq!(f("blk.1.attn_q.weight"), QFormat::Q5_0);
        assert_eq!(f("blk.0.attn_v.weight"), QFormat::Q8_0);
        assert_eq!(f("blk.0.ffn_down.weight"), QFormat::Q6K);
        assert_eq!(f("token_embd.weight"), QFormat::Q8_0);
        assert!(parse_format("Q9_9").is_none());
    }
}
