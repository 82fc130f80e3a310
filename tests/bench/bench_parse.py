"""Benchmark: parse a large console log (default 100 MB) and report the
time and peak memory. Not a test: run it by hand or from CI logs.

    python tests/bench/bench_parse.py [--mb 100]
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.ktap import parse_file  # noqa: E402
from runner.results import leaves  # noqa: E402

SUITE = """[{t:12.6f}]     KTAP version 1
[{t:12.6f}]     # Subtest: suite_{s}
[{t:12.6f}]     1..{n}
{cases}[{t:12.6f}] # suite_{s}: pass:{n} fail:0 skip:0 total:{n}
[{t:12.6f}] ok {i} suite_{s}
"""
NOISE = "[{t:12.6f}] virtio_net virtio0: some driver chatter number {k} with a few words\n"


def write_log(path: Path, mb: int) -> int:
    """A KUnit run whose suites are buried in printk noise."""
    size, t, i, declared = 0, 0.0, 0, 0
    suites = []
    with open(path, "w") as f:
        f.write("[    0.000000] KTAP version 1\n")
        while size < mb << 20:
            i += 1
            n = 8
            cases = "".join(f"[{t:12.6f}]     ok {j} case_{j}\n" for j in range(1, n + 1))
            chunk = "".join(NOISE.format(t=t, k=k) for k in range(300))
            chunk += SUITE.format(t=t, s=i, n=n, i=i, cases=cases)
            f.write(chunk)
            size += len(chunk)
            declared += n
            t += 0.01
        suites.append(i)
    return declared


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "console.log"
        declared = write_log(log, args.mb)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out = parse_file(str(log))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        found = len(leaves(out.tests))
        size = log.stat().st_size / (1 << 20)
    print(f"parsed {size:.0f} MiB, {found}/{declared} test cases, in {seconds:.2f} s "
          f"({size / seconds:.0f} MiB/s); peak RSS {peak / 1024:.0f} MiB "
          f"(before parsing {before / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
