"""Side by side, interleaved: joulebench `generate` and llama.cpp (through llama-cpp-python's
bindings to the vendored llama.cpp) on the same GGUF files, prompt length, new tokens and threads.
Prints a Markdown table of medians (prefill and decode tokens/s, peak RSS).

Usage: python bench_llamacpp.py JOULEBENCH_BIN ROUNDS THREADS FILE.gguf [FILE.gguf ...]
Needs llama_cpp importable (scripts/bench-llamacpp.sh sets that up)."""
import json, os, resource, statistics, subprocess, sys, time

PROMPT, NEW = 64, 64


def llamacpp(path, threads):
    """One run in a child process: (prefill tok/s, decode tok/s, peak RSS MiB)."""
    code = r'''
import sys, time, resource, llama_cpp
path, threads, P, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=P + N + 8,
                      n_batch=512, verbose=False, use_mmap=True)
text = open(sys.argv[5]).read()
toks = llm.tokenize(text.encode(), add_bos=False)[:P]
t0 = time.perf_counter(); llm.eval(toks); t1 = time.perf_counter()
n = 0
for _ in range(N):
    tok = llm.sample(temp=0.0)
    llm.eval([tok]); n += 1
t2 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(P / (t1 - t0), n / (t2 - t1), rss)
'''
    text = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "engine", "text", "prompt_text.txt")
    if not os.path.exists(text):
        text = "/tmp/jb-bench-prompt.txt"
        with open(text, "w") as f:
            f.write(("It was the best of times, it was the worst of times, it was the age of wisdom, "
                     "it was the age of foolishness. ") * 20)
    out = subprocess.run([sys.executable, "-c", code, path, str(threads), str(PROMPT), str(NEW), text],
                         capture_output=True, text=True, check=True).stdout.split()
    return tuple(float(x) for x in out)


def joulebench(exe, path, threads, decode=None):
    args = [exe, "generate", "--model", path, "--prompt-tokens", str(PROMPT), "--max-new-tokens",
            str(NEW), "--ignore-eos", "--threads", str(threads), "--json", "--offline"]
    if decode:
        args += ["--decode-matmul", decode]
    t = subprocess.run(["/usr/bin/time", "-f", "%M"] + args, capture_output=True, text=True, check=True)
    v = json.loads(t.stdout)
    rss = float(t.stderr.strip().splitlines()[-1]) / 1024
    return v["prefill_tokens_per_s"], v["decode_tokens_per_s"], rss, v["model"]["engine"]["decode_matmul"]


def main():
    exe, rounds, threads, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    res = {f: {"jb": [], "old": [], "cpp": []} for f in files}
    kern = {}
    for r in range(rounds):
        for f in (files if r % 2 == 0 else list(reversed(files))):
            order = ["jb", "old", "cpp"] if r % 2 == 0 else ["cpp", "old", "jb"]
            for who in order:
                if who == "cpp":
                    res[f]["cpp"].append(llamacpp(f, threads))
                else:
                    p, d, m, k = joulebench(exe, f, threads, "candle" if who == "old" else None)
                    res[f][who].append((p, d, m))
                    if who == "jb":
                        kern[f] = k
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    print(f"{threads} thread(s), {PROMPT}-token prompt, {NEW} new tokens, medians of {rounds} interleaved rounds\n")
    print("| file | decode kernel | prefill tok/s jb / llama.cpp | decode tok/s jb / candle qmm / llama.cpp | peak RSS MiB jb / llama.cpp |")
    print("|---|---|---|---|---|")
    for f in files:
        j, o, c = res[f]["jb"], res[f]["old"], res[f]["cpp"]
        print(f"| {os.path.basename(f)} | {kern[f]} | {med(j,0):.0f} / {med(c,0):.0f} ({med(j,0)/med(c,0):.2f}x) | "
              f"{med(j,1):.1f} / {med(o,1):.1f} / {med(c,1):.1f} ({med(j,1)/med(c,1):.2f}x) | "
              f"{med(j,2):.0f} / {med(c,2):.0f} ({med(j,2)/med(c,2):.1f}x) |")


if __name__ == "__main__":
    main()
