#!/usr/bin/env python3
"""Checks that imports in src/ only go down the layers of ARCHITECTURE.md.

The layer table in ARCHITECTURE.md gives each file of src/ a layer (by glob; the longest
matching glob wins). Every `use crate::...` / `use super::...` and every inline `crate::` /
`super::` path is resolved to the file that defines the module it names; a file may use files
of its own layer or below, never above. Names listed as "Allowed from any layer" (the module
static, needed for configuration and context lookups) are exempt.

Usage: scripts/layers.py [--table FILE] [--verbose]; exit status 1 on any upward import.
"""
import fnmatch
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
SRC = os.path.join(ROOT, "src")


def read_table(path):
    """[(glob, layer)] and the exempt paths, from the markdown layer table."""
    globs, allowed = [], set()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for line in text.splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|[^|]*\|(.*)\|\s*$", line)
        if m:
            layer = int(m.group(1))
            for g in re.findall(r"`([^`]+)`", m.group(2)):
                globs.append((g, layer))
        if line.startswith("Allowed from any layer:"):
            allowed.update(re.findall(r"`([^`]+)`", line))
    return globs, allowed


def layer_of(rel, globs):
    best = None
    for g, layer in globs:
        if fnmatch.fnmatch(rel, g) and (best is None or len(g) > len(best[0])):
            best = (g, layer)
    return None if best is None else best[1]


def module_of(rel):
    """src/a/b.rs -> ['a', 'b']; src/a/mod.rs -> ['a']; src/lib.rs -> []."""
    parts = rel[len("src/"):-len(".rs")].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def file_of(module):
    """The file defining `module` (a list of names), or None."""
    base = os.path.join(SRC, *module) if module else None
    if not module:
        return "src/lib.rs"
    for cand in (base + ".rs", os.path.join(base, "mod.rs")):
        if os.path.isfile(cand):
            return os.path.relpath(cand, ROOT)
    return None


def expand_use(tree):
    """Expands `a::{b, c::{d, e}}` into ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, depth, parts, start = tree[:i], 0, [], i + 1
    for j in range(i, len(tree)):
        c = tree[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                parts.append(tree[start:j])
                break
        elif c == "," and depth == 1:
            parts.append(tree[start:j])
            start = j + 1
    out = []
    for p in parts:
        if p:
            out.extend(expand_use(prefix + p))
    return out


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def paths_in(text):
    text = strip_comments(text)
    found = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text):
        found.extend(expand_use(m.group(1)))
    body = re.sub(r"\buse\s+(?:crate|super|self)\b[^;]*;", "", text)
    found.extend(m.group(0) for m in re.finditer(r"\b(?:crate|super)(?:::\w+)+", body))
    return found


def resolve(importer_mod, path):
    """The file a path's module part names, and the path from the crate root."""
    segs = [s for s in path.split("::") if s]
    mod = list(importer_mod)
    if segs[0] == "crate":
        mod, segs = [], segs[1:]
    else:
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                mod = mod[:-1]
            segs = segs[1:]
    target = file_of(mod)
    full = list(mod)
    for s in segs:
        f = file_of(full + [s])
        if f is None:
            break
        full.append(s)
        target = f
    rest = segs[len(full) - len(mod):]
    return target, "crate::" + "::".join(full + rest[:1])


def components(edges):
    """Strongly connected components (Tarjan), for the report of import cycles."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    args = sys.argv[1:]
    table = os.path.join(ROOT, "ARCHITECTURE.md")
    if "--table" in args:
        table = args[args.index("--table") + 1]
    verbose = "--verbose" in args
    globs, allowed = read_table(table)
    files = []
    for d, _, names in os.walk(SRC):
        files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names if n.endswith(".rs")]
    unplaced = [f for f in sorted(files) if layer_of(f, globs) is None]
    upward = []
    edges = {f: set() for f in files}
    for f in sorted(files):
        lf = layer_of(f, globs)
        with open(os.path.join(ROOT, f), encoding="utf-8") as fh:
            text = fh.read()
        seen = set()
        for p in paths_in(text):
            target, named = resolve(module_of(f), p)
            if target is None or target == f or named in allowed:
                continue
            edges[f].add(target)
            lt = layer_of(target, globs)
            if lf is not None and lt is not None and lt > lf and (target, named) not in seen:
                seen.add((target, named))
                upward.append((f, lf, target, lt, named))
    for f in unplaced:
        print(f"not in the layer table: {f}")
    for f, lf, t, lt, named in upward:
        print(f"upward: {f} (layer {lf}) uses {named} from {t} (layer {lt})")
    cycles = [c for c in components(edges) if len(c) > 1]
    for c in cycles:
        print(f"cycle of {len(c)} files: {', '.join(sorted(c))}")
    print(f"{len(upward)} upward imports, {len(unplaced)} files without a layer")
    if verbose:
        for f in sorted(files):
            print(f"  {layer_of(f, globs)}  {f}")
    sys.exit(1 if upward or unplaced else 0)


if __name__ == "__main__":
    main()
