"""Where a Python process spends its CPU, by package, from a py-spy profile.

How docs/benchmarks.md's gateway profile was taken (py-spy is not a project dependency:
install it into a throwaway venv, `python3 -m venv /tmp/prof && /tmp/prof/bin/pip install py-spy`):

    /tmp/prof/bin/py-spy record -p GATEWAY_PID -d 20 -r 200 -f raw -o gw.folded --nonblocking
    (while wrk drives the gateway; bench/native_load.py has the request)
    .venv/bin/python bench/pyspy_summary.py gw.folded

Self time goes to the package of the innermost frame; inclusive time to every package on the
stack. Failed imports get their own line: an `import` that raises ImportError on a hot path
searches sys.path again on every call (httpcore imports sniffio per pooled request).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"\((.*?):\d+\)$")


def package(frame: str) -> str:
    match = FRAME.search(frame)
    path = match.group(1) if match else frame
    if path.startswith("<frozen importlib"):
        return "importlib (an import searched sys.path)"
    return path.split("/", 1)[0].removesuffix(".py")


def summarise(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[package(frames[-1])] += n
        for name in {package(f) for f in frames}:
            inclusive[name] += n
    return total, own, inclusive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folded", help="py-spy record -f raw output")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with open(args.folded) as fh:
        total, own, inclusive = summarise(fh.readlines())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples")
    print("| package | self | inclusive |")
    print("| --- | ---: | ---: |")
    for name, n in own.most_common(args.top):
        print(f"| {name} | {n / total:.1%} | {inclusive[name] / total:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
