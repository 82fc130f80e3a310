"""Writes a hostile console of about --mb MB (default 200) for timing
`runner parse --junit --json` (README, "Benchmarks"). Not a test.

    python tests/bench/hostile_console.py OUT [--mb 200]
    /usr/bin/time -v .venv/bin/runner parse OUT -q --junit j.xml --json r.json

Every kind of line the parser caps or escapes, repeated: suites of
failing cases with long diagnostics, characters XML forbids and terminal
escapes, lines past 4 KB, nesting past 64 levels, plans claiming a billion
tests, numbers of 5,000 digits, and printk noise between them."""

import argparse
from pathlib import Path

NASTY = "\x00\x1b[31m<&>\"'\u202e\ud7ff\x07"


def block(i: int) -> str:
    t = f"[{i * 0.001:12.6f}] "
    out = [t + "KTAP version 1", t + f"# Subtest: suite_{i}{NASTY}", t + "1..1000000000"]
    for j in range(1, 41):
        name = f"case_{j}{NASTY}"
        if j % 3 == 0:
            out += [t + f"    # diag {k}: expected {NASTY} got " + "x" * 200 for k in range(4)]
            out.append(t + f"not ok {j} {name}")
        elif j % 7 == 0:
            out.append(t + f"ok {j} {name} # SKIP {NASTY}")
        else:
            out.append(t + f"ok {j} {name}")
    out.append(t + "ok " + "9" * 5000 + " huge")
    out.append(t + "# " + "y" * 9000)
    out += [t + " " * d + "ok 1 deep" for d in range(0, 140, 2)]
    out += [t + f"virtio_net virtio0: driver chatter {k} {NASTY}" for k in range(60)]
    out.append(t + f"not ok {i} suite_{i}")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()
    size, i = 0, 0
    with open(args.out, "w", encoding="utf-8", errors="surrogatepass") as f:
        while size < args.mb << 20:
            i += 1
            chunk = block(i)
            f.write(chunk)
            size += len(chunk.encode("utf-8", "surrogatepass"))
    print(f"{args.out}: {size >> 20} MiB, {i} suites")


if __name__ == "__main__":
    main()
