#!/usr/bin/env python3
"""`perf script` output → folded stacks, a summary per component, and a flame graph (SVG).

usage: perf script -i perf.data | bench/fold.py OUT_PREFIX REQUESTS HZ
Writes OUT_PREFIX.folded (one "frame;frame;... count" line per stack, root first, the format
of Brendan Gregg's stackcollapse and inferno), OUT_PREFIX.svg (a flame graph, plain SVG with
a tooltip per frame), and prints, per component, the samples whose leaf frame is in it (self)
and those with a frame of it anywhere on the stack (inclusive), as percentages and as µs of CPU per request: perf sampled CPU time at HZ, so
each sample stands for 1/HZ s, spread over the REQUESTS served while it sampled.
"""

import html
import re
import sys
from collections import Counter, defaultdict

# A frame's component: the kernel and unresolved frames by their object, the rest by the
# first pattern that matches the symbol (so that a binary's name, "pingora-min", says nothing).
COMPONENTS = [
    ("allocator", r"\bmi_|mimalloc|_int_malloc|_int_free|\bmalloc\b|\bfree\b|\brealloc\b|cfree|tcache|malloc_consolidate|unlink_chunk|__rust_alloc|__rust_dealloc|__rdl_"),
    ("memcpy/memmove", r"__mem(cpy|move|set)"),
    ("loom", r"\bloom_(pingora|core|cli)\b|\bloom::"),
    ("pingora", r"\bpingora"),
    ("tokio", r"\btokio\b|\bmio\b"),
    ("http/httparse", r"\bhttp::|\bhttparse\b|\bbytes::"),
    ("prometheus", r"\bprometheus\b"),
    ("hashing", r"\bsip::|hash::|ahash|foldhash|hashbrown"),
]


# A flame graph's colour per component (warm hues), the same in every run.
HUES = {name: 8 * i for i, name in enumerate(
    ["kernel", "unknown", "libc", "other", *(name for name, _ in COMPONENTS)])}


def component(frame):
    sym, _, dso = frame.rpartition(" (")
    if dso.startswith("[kernel.kallsyms]"):
        return "kernel"
    if sym.startswith("[unknown]"):
        return "unknown"
    for name, pattern in COMPONENTS:
        if re.search(pattern, sym):
            return name
    if re.match(r"(libc|ld-linux|libm|libgcc)", dso):
        return "libc"
    return "other"


def parse(lines):
    """Yields each sample's frames, leaf first, as "symbol (dso)"."""
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if not line.startswith((" ", "\t")):
            continue  # the sample's header (comm, pid, time, event)
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if not m:
            continue
        sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
        dso = m.group(2).rsplit("/", 1)[-1]
        frames.append(f"{sym} ({dso})")
    if frames:
        yield frames


def svg(folded, total, out, title):
    """A flame graph: root at the bottom, each frame as wide as its samples."""
    root = {"n": 0, "c": {}}
    for stack, count in folded.items():
        node = root
        node["n"] += count
        for frame in stack.split(";"):
            node = node["c"].setdefault(frame, {"n": 0, "c": {}})
            node["n"] += count
    width, row = 1200, 16
    rects = []

    def depth(node):
        return 1 + max((depth(c) for c in node["c"].values()), default=0)
    height = (depth(root) + 2) * row

    def walk(node, x, level):
        for name, child in sorted(node["c"].items()):
            w = child["n"] / total * width
            if w >= 0.1:
                y = height - (level + 2) * row
                hue = HUES.get(component(name), 0)
                label = html.escape(name)
                pct = 100 * child["n"] / total
                text = html.escape(name[: int(w / 7)]) if w > 21 else ""
                rects.append(
                    f'<g><title>{label} — {child["n"]} samples, {pct:.2f} %</title>'
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="hsl({hue},80%,60%)"/><text x="{x + 2:.1f}" y="{y + row - 4}" '
                    f'font-size="11" font-family="monospace">{text}</text></g>')
                walk(child, x, level + 1)
            x += w
    walk(root, 0.0, 0)
    with open(out, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
                f'<text x="4" y="14" font-size="13" font-family="sans-serif">{html.escape(title)}'
                f"</text>\n" + "\n".join(rects) + "\n</svg>\n")


def main():
    prefix, requests, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    us = 1e6 / hz / requests  # µs of CPU per request for one sample
    folded = Counter()
    self_by, incl_by = Counter(), Counter()
    total = 0
    for frames in parse(sys.stdin):
        total += 1
        folded[";".join(reversed(frames))] += 1
        self_by[component(frames[0])] += 1
        for c in {component(f) for f in frames}:
            incl_by[c] += 1
    if not total:
        raise SystemExit("no samples")
    with open(f"{prefix}.folded", "w") as f:
        for stack, count in sorted(folded.items()):
            f.write(f"{stack} {count}\n")
    svg(folded, total, f"{prefix}.svg", f"{prefix.rsplit('/', 1)[-1]}: {total} samples")
    print(f"{total} samples at {hz:.0f} Hz over {requests:.0f} requests: "
          f"{total * us:.2f} µs of CPU per request")
    print(f"| component | self % | inclusive % | self µs/request | inclusive µs/request |")
    print("| --- | --- | --- | --- | --- |")
    for name in sorted(set(self_by) | set(incl_by), key=lambda n: -self_by[n]):
        print(f"| {name} | {100 * self_by[name] / total:.1f} | {100 * incl_by[name] / total:.1f} | "
              f"{self_by[name] * us:.2f} | {incl_by[name] * us:.2f} |")


if __name__ == "__main__":
    main()
