#!/usr/bin/env python3
"""Two joulebench builds' engines side by side in one sitting: `generate` on the same GGUF files,
prompt length, new tokens and threads, interleaved ABBA (old, new, new, old, ...) so a linear
drift in the machine's speed cancels. Prints medians of prefill and decode tokens/s per file and
the ratio new/old, and whether the generated tokens are identical.

Usage: scripts/compare-engine.py OLD_BIN NEW_BIN ROUNDS THREADS FILE.gguf [...]"""
import json, statistics, subprocess, sys

PROMPT, NEW = 128, 64


def run(exe, path, threads):
    args = [exe, "generate", "--model", path, "--prompt-tokens", str(PROMPT), "--max-new-tokens",
            str(NEW), "--ignore-eos", "--threads", str(threads), "--json", "--offline", "--warmup", "1"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{exe} failed on {path} ({p.returncode}):\n{p.stderr[-2000:]}")
    v = json.loads(p.stdout)
    return v["prefill_tokens_per_s"], v["decode_tokens_per_s"], v.get("tokens") or v.get("text")


def main():
    old, new, rounds, threads, files = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                        int(sys.argv[4]), sys.argv[5:])
    res = {f: {"old": [], "new": []} for f in files}
    same = {f: True for f in files}
    for r in range(rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for f in files:
            outs = {}
            for who in order:
                p, d, toks = run(old if who == "old" else new, f, threads)
                res[f][who].append((p, d))
                outs[who] = toks
            same[f] &= outs["old"] == outs["new"]
    print(f"{threads} thread(s), {PROMPT}-token prompt, {NEW} new tokens, medians of {rounds} "
          "interleaved rounds")
    print("| file | prefill old | prefill new | ratio | decode old | decode new | ratio | same tokens |")
    print("|---|---|---|---|---|---|---|---|")
    for f in files:
        m = lambda who, i: statistics.median(x[i] for x in res[f][who])
        po, pn, do, dn = m("old", 0), m("new", 0), m("old", 1), m("new", 1)
        print(f"| {f.rsplit('/', 1)[-1]} | {po:.1f} | {pn:.1f} | {pn / po:.3f} | {do:.1f} | {dn:.1f} "
              f"| {dn / do:.3f} | {'yes' if same[f] else 'NO'} |")


if __name__ == "__main__":
    main()
