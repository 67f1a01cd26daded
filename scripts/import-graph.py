#!/usr/bin/env python3
"""File-level import graph of src/: its layers and its cycles.

Every `crate::a::b` path (in `use` lines and inline), `super::x` and `self::x` is resolved to the
file that defines that module. Two checks, each failing the script (exit 1):

- Layers: every module has a rank in RANKS (one table, below); an import must point to a module
  of lower rank. Two files are compared at the first folder where their paths part: `runner/x`
  against `meter/y` by the ranks of `runner` and `meter`, `engine/models/a` against
  `engine/kernels/b` by the ranks of `engine/models` and `engine/kernels`. Where that level has
  no ranks (inside one room), only the cycle check applies. A `mod.rs` and its own descendants
  share freely. A module missing from the table is an error: add it with its rank.
- Cycles: besides a `mod.rs` with its own children, no strongly connected component of two or
  more files.

`--edges` prints the graph; `--ranks` prints the table.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# The layers, highest first: a module imports only modules of lower rank (README's "How the code
# is laid out" draws the same). Keys are module paths; ranks compare only between siblings.
RANKS = {
    # the binary
    "main": 100, "commands": 100, "cli": 95,
    # what the commands run
    "runner": 90,
    "ab": 80, "cluster": 80,
    "compare": 70,
    "report": 60,
    "eval": 56, "frontier": 55, "baseline": 55, "measure": 55, "estimate": 55,
    # the data model
    "plan": 50, "metric": 50,
    "record": 45,
    "config": 40,
    "run_meta": 35,
    # engines and meters
    "engine": 30, "fingerprint": 30,
    "meter": 25,
    "store": 20,
    # leaves
    "run_dir": 12, "procs": 11, "stats": 10, "units": 10, "clock": 10, "names": 10, "redact": 10,
    # the engine's rooms
    "engine/external": 7,
    "engine/models": 6,
    "engine/driver": 5, "engine/spec": 5,
    "engine/arrival": 4, "engine/load_curve": 4,
    "engine/text": 3,
    "engine/gguf": 2,
    "engine/kernels": 1,
    # the kernels' rooms: the dispatch above the implementations above the data; `x86` has no
    # rank of its own: each of its files sits at the level of the portable code it stands in for
    "engine/kernels/tests": 10,
    "engine/kernels/matvec": 9,
    "engine/kernels/gemm": 8,
    "engine/kernels/scalar": 7, "engine/kernels/x86/dot": 7, "engine/kernels/x86/gemm": 7,
    "engine/kernels/tiles": 5,
    "engine/kernels/x86/unpack": 4,
    "engine/kernels/quant": 3,
    "engine/kernels/x86/quant": 2,
    "engine/kernels/blocks": 1,
    "engine/kernels/x86": 0,
}

# Folders whose files are ranked one by one among their folder's siblings (the x86 twins of the
# portable kernels); the folder's own mod.rs takes the folder's rank.
TWINS = {"engine/kernels/x86"}


def module_of(path):
    """src/a/b.rs -> ['a','b']; src/a/mod.rs -> ['a']; src/lib.rs -> []."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def strip_comments_and_strings(text):
    """Blank out comments, string, raw-string and char literals with a small scanner."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c in "rb" and re.match(r"(?:br|r)#*\"", text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r"(?:br|r)(#*)\"", text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            i = n if j < 0 else j + len(close)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            m = re.match(r"'(?:\\.[^']*|[^\\'])'", text[i:])
            if m:
                i += m.end()
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def cfg_test_stripped(text):
    """Drop `#[cfg(test)] mod tests { ... }` blocks: tests may import freely."""
    out = []
    i = 0
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text[i:])
        if not m:
            out.append(text[i:])
            break
        start = i + m.start()
        out.append(text[i:start])
        depth = 0
        j = i + m.end() - 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1
    return "".join(out)


def expand_use_trees(text):
    """Yield every path named by `use` trees (`use crate::a::{b, c::d};` -> crate::a::b, ...)."""
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        tree = re.sub(r"\s+", "", m.group(1))
        yield from _expand(tree)


def _expand(tree, prefix=""):
    if "{" not in tree:
        for part in _split_top(tree):
            yield prefix + part.split(" as ")[0]
        return
    parts = _split_top(tree)
    if len(parts) > 1:
        for p in parts:
            yield from _expand(p, prefix)
        return
    head, rest = tree.split("{", 1)
    inner = rest[: rest.rfind("}")]
    for p in _split_top(inner):
        yield from _expand(p, prefix + head)


def _split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def main():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(dirpath, n)
                if os.path.relpath(p, ROOT) == "main.rs":
                    continue
                files[tuple(module_of(p))] = os.path.relpath(p, ROOT)
    edges = {f: set() for f in files.values()}
    for mod, rel in files.items():
        text = cfg_test_stripped(strip_comments_and_strings(open(os.path.join(ROOT, rel)).read()))
        paths = set(expand_use_trees(text))
        paths |= set(re.findall(r"\b(?:crate|super)(?:::\w+)+", text))
        if os.path.basename(rel) in ("mod.rs", "lib.rs"):
            for child in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M):
                paths.add("self::" + child)
        for path in paths:
            segs = path.split("::")
            if segs[0] == "crate":
                target = []
                segs = segs[1:]
            elif segs[0] in ("super", "self"):
                target = list(mod)
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        target = target[:-1]
                    segs = segs[1:]
            else:
                continue
            # deepest module that exists
            best = tuple(target)
            for s in segs:
                cand = best + (s,)
                if cand in files:
                    best = cand
                else:
                    break
            dst = files.get(best)
            if dst and dst != rel:
                edges[rel].add(dst)
    if "--edges" in sys.argv:
        for f in sorted(edges):
            for t in sorted(edges[f]):
                print(f"{f} -> {t}")
    if "--ranks" in sys.argv:
        for k, v in sorted(RANKS.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"{v:4}  {k}")
    ups, unranked = layer_violations(edges)
    for u in sorted(unranked):
        print(f"no rank for {u}: add it to RANKS in scripts/import-graph.py")
    for a, b, ra, rb, la, lb in sorted(ups):
        print(f"upward import: {a} -> {b} ({la} rank {ra} imports {lb} rank {rb})")
    cycles = [c for c in sccs(edges) if len(c) > 1 and not allowed(c)]
    # Without the edges between a mod.rs and its own descendants, any cycle left runs between
    # siblings or across modules, even when a shared parent hid it in the first pass.
    bare = {f: {t for t in ts if not parent_child(f, t)} for f, ts in edges.items()}
    cycles += [c for c in sccs(bare) if len(c) > 1 and sorted(c) not in map(sorted, cycles)]
    for c in cycles:
        print("cycle: " + " <-> ".join(sorted(c)))
    if cycles or ups or unranked:
        return 1
    print(
        f"no import cycle and no upward import among {len(files)} files "
        f"(a mod.rs with its own children excepted)"
    )
    return 0


def mod_path(rel):
    """src-relative file -> module path parts: a/b.rs -> [a, b]; a/mod.rs -> [a]."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts or ["lib"]


def rank_at(parts, i):
    """The rank of the module `parts` at the level where it parts from another path (`i`):
    `parts[:i + 1]`'s, or inside a folder of TWINS the deepest entry below it, ranked among that
    folder's siblings."""
    key = "/".join(parts[: i + 1])
    if key in TWINS:
        for k in range(len(parts), i + 1, -1):
            deeper = "/".join(parts[:k])
            if deeper in RANKS:
                return deeper, RANKS[deeper]
    return key, RANKS.get(key)


def layer_violations(edges):
    """Edges that do not point to a lower rank, and module paths the table lacks."""
    ups, unranked = set(), set()
    for src, dsts in edges.items():
        if src == "lib.rs":
            continue
        a = mod_path(src)
        for dst in dsts:
            if parent_child(src, dst):
                continue
            b = mod_path(dst)
            i = 0
            while i < min(len(a), len(b)) and a[i] == b[i]:
                i += 1
            if i == len(a) or i == len(b):
                continue  # one is the other's ancestor module (a mod.rs and its own children)
            # Inside a room with no ranks of its own, only the cycle check applies.
            prefix = "/".join(a[:i])
            if i and not any(k.startswith(prefix + "/") for k in RANKS):
                continue
            (la, ra), (lb, rb) = rank_at(a, i), rank_at(b, i)
            for m, r in ((la, ra), (lb, rb)):
                if r is None:
                    unranked.add(m)
            if ra is not None and rb is not None and rb >= ra:
                ups.add((src, dst, ra, rb, la, lb))
    return ups, unranked


def under(path, modrs):
    folder = os.path.dirname(modrs)
    return folder == "" or path.startswith(folder + os.sep)


def parent_child(a, b):
    for x, y in ((a, b), (b, a)):
        if os.path.basename(x) in ("mod.rs", "lib.rs") and x != y and under(y, x):
            return True
    return False


def allowed(component):
    """A cycle is allowed when it is a mod.rs and files below its own folder."""
    for m in component:
        if os.path.basename(m) == "mod.rs" and all(c == m or under(c, m) for c in component):
            return True
    return False


def sccs(graph):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
