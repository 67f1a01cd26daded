"""Side by side, interleaved: joulebench `generate` and llama.cpp's `llama-bench` on the same GGUF
files, prompt length, new tokens and threads. Prints a Markdown table of medians (prefill and
decode tokens/s, peak RSS of the process).

Usage: python bench_llamacpp.py JOULEBENCH_BIN LLAMA_BENCH_BIN ROUNDS THREADS FILE.gguf [...]
(scripts/bench-llamacpp.sh builds llama-bench and the files)."""
import json, os, statistics, subprocess, sys

PROMPT, NEW = 64, 64
# Files above this size skip the dense plan (its f32 copy needs about 4x the file in memory).
DENSE_MAX = 300 << 20


def timed(args):
    """Runs args under /usr/bin/time: (stdout, peak RSS MiB)."""
    t = subprocess.run(["/usr/bin/time", "-f", "%M"] + args, capture_output=True, text=True)
    if t.returncode != 0:
        sys.exit(f"{args[0]} failed ({t.returncode}):\n{t.stderr[-2000:]}")
    return t.stdout, float(t.stderr.strip().splitlines()[-1]) / 1024


def llama_bench(exe, path, threads):
    """One llama-bench run (its warmup, then one repetition of pp and tg): (prefill, decode, RSS)."""
    out, rss = timed([exe, "-m", path, "-p", str(PROMPT), "-n", str(NEW), "-t", str(threads),
                      "-r", "1", "-o", "json"])
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
    return pp, tg, rss


def joulebench(exe, path, threads, prefill=None):
    args = [exe, "generate", "--model", path, "--prompt-tokens", str(PROMPT), "--max-new-tokens",
            str(NEW), "--ignore-eos", "--threads", str(threads), "--json", "--offline",
            # As llama-bench is run here: one warm-up generation, then one measured.
            "--warmup", "1"]
    if prefill:
        args += ["--prefill-matmul", prefill]
    out, rss = timed(args)
    v = json.loads(out)
    e = v["model"]["engine"]
    return v["prefill_tokens_per_s"], v["decode_tokens_per_s"], rss, e["prefill_matmul"], e["decode_matmul"]


def cpu():
    """The CPU's model name, core count and the vector extensions the kernels choose between."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "unknown")
    flags = set(next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), []))
    isa = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile") if f in flags]
    fam = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("cpu family")), "?")
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model\t")), "?")
    return f"{name} (family {fam}, model {model}), {os.cpu_count()} logical CPUs; ISA: {' '.join(isa) or 'none of AVX2/AVX-512'}"


def main():
    exe, bench, rounds, threads, files = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                          int(sys.argv[4]), sys.argv[5:])
    res = {f: {"jb": [], "dense": [], "cpp": []} for f in files}
    kern = {}
    for r in range(rounds):
        for f in (files if r % 2 == 0 else list(reversed(files))):
            order = ["jb", "dense", "cpp"] if r % 2 == 0 else ["cpp", "dense", "jb"]
            for who in order:
                if who == "cpp":
                    res[f]["cpp"].append(llama_bench(bench, f, threads))
                elif who == "dense" and os.path.getsize(f) > DENSE_MAX:
                    res[f]["dense"].append((float("nan"),) * 3)
                else:
                    p, d, m, kp, kd = joulebench(exe, f, threads, "dense" if who == "dense" else None)
                    res[f][who].append((p, d, m))
                    if who == "jb":
                        kern[f] = (kp, kd)
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    print(f"CPU: {cpu()}\n")
    print(f"{threads} thread(s), {PROMPT}-token prompt, {NEW} new tokens, medians of {rounds} "
          "interleaved rounds; jb = joulebench default, dense = joulebench --prefill-matmul dense\n")
    print("| file | prefill tok/s jb / dense / llama.cpp | decode tok/s jb / llama.cpp | "
          "peak RSS MiB jb / dense / llama.cpp |")
    print("|---|---|---|---|")
    for f in files:
        j, o, c = res[f]["jb"], res[f]["dense"], res[f]["cpp"]
        print(f"| {os.path.basename(f)} | {med(j,0):.0f} / {med(o,0):.0f} / {med(c,0):.0f} "
              f"({med(j,0)/med(c,0):.2f}x) | {med(j,1):.1f} / {med(c,1):.1f} ({med(j,1)/med(c,1):.2f}x) | "
              f"{med(j,2):.0f} / {med(o,2):.0f} / {med(c,2):.0f} ({med(j,2)/med(c,2):.2f}x) |")
    print("\nKernels (joulebench default):\n")
    for f in files:
        print(f"- {os.path.basename(f)}: prefill {kern[f][0]}; decode {kern[f][1]}")


if __name__ == "__main__":
    main()
