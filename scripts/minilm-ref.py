#!/usr/bin/env python3
"""Regenerates tests/fixtures/minilm-ref.json: all-MiniLM-L6-v2 sentence embeddings computed
without joulebench, in float64 with numpy straight from the model's safetensors file, token ids
from Hugging Face's `tokenizers` package. joulebench's encoder must give the same unit vectors
(tests/engine.rs, `minilm_matches_an_independent_float64_encoder`).

The forward is BERT as the checkpoint's config.json describes it: word + position + token-type
(0) embeddings, LayerNorm; per layer, 12-head self-attention (every token attends to every
token: inputs carry no padding), output projection, residual, LayerNorm; a GELU (erf form, the
config's "gelu") feed-forward, residual, LayerNorm. The sentence vector is the mean over tokens,
scaled to unit length, as sentence-transformers' mean pooling and Normalize modules do.

Usage: python3 scripts/minilm-ref.py MODEL_DIR > tests/fixtures/minilm-ref.json
       (MODEL_DIR: ~/.cache/joulebench/models/all-minilm-l6-v2 after
        `joulebench models fetch all-minilm-l6-v2`; needs `pip install numpy tokenizers`)
"""

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome and the sky is blue.",
    "Joules per token: how much energy does one generated word cost on this machine, "
    "measured by RAPL or NVML, or estimated where no sensor covers the CPU?",
    "naïve café — 3.14159 × 2 = 6.28; emoji 🙂 and CJK 能源",
]


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, meta in header.items():
            if name == "__metadata__" or meta["dtype"] != "F32":
                continue
            a, b = meta["data_offsets"]
            f.seek(base + a)
            out[name] = np.frombuffer(f.read(b - a), dtype="<f4").reshape(meta["shape"]).astype(np.float64)
        return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def encode(t, cfg, ids):
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    n = len(ids)
    x = t["embeddings.word_embeddings.weight"][ids]
    x = x + t["embeddings.position_embeddings.weight"][:n] + t["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    d = x.shape[1] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda v, name: v @ t[p + name + ".weight"].T + t[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * d)
        a = lin(ctx, "attention.output.dense")
        x = layer_norm(a + x, t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin(x, "intermediate.dense"))
        o = lin(h, "output.dense")
        x = layer_norm(o + x, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    m = x.mean(0)
    return m / np.linalg.norm(m)


def main():
    folder = Path(sys.argv[1])
    cfg = json.loads((folder / "config.json").read_text())
    t = tensors(folder / "model.safetensors")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # The file asks for padding to 128 tokens; joulebench's inputs carry none.
    tok.no_padding()
    tok.no_truncation()
    items = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=True).ids
        items.append({"text": text, "ids": ids, "embedding": [round(float(v), 7) for v in encode(t, cfg, ids)]})
    print('{"model": "all-minilm-l6-v2", "generator": "scripts/minilm-ref.py (numpy float64)", "items": [')
    print(",\n".join(json.dumps(i, ensure_ascii=False) for i in items))
    print("]}")


if __name__ == "__main__":
    main()
