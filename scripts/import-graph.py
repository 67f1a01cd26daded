#!/usr/bin/env python3
"""File-level import graph of src/ and its cycles.

Every `crate::a::b` path (in `use` lines and inline), `super::x` and `self::x` is resolved to the
file that defines that module. Edges between a `mod.rs` and its own children are allowed (the
house style lets a module and its children share freely); any other strongly connected component
of two or more files is a cycle and makes the script exit 1. `--edges` prints the graph.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


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
    cycles = [c for c in sccs(edges) if len(c) > 1 and not allowed(c)]
    # Without the edges between a mod.rs and its own descendants, any cycle left runs between
    # siblings or across modules, even when a shared parent hid it in the first pass.
    bare = {f: {t for t in ts if not parent_child(f, t)} for f, ts in edges.items()}
    cycles += [c for c in sccs(bare) if len(c) > 1 and sorted(c) not in map(sorted, cycles)]
    for c in cycles:
        print("cycle: " + " <-> ".join(sorted(c)))
    if cycles:
        return 1
    print(f"no import cycle among {len(files)} files (a mod.rs with its own children excepted)")
    return 0


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
