"""runner bench end to end: four real benchmark kernels, booted under QEMU
(-icount under TCG). Marked slow: three kernel builds from a cold cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def test_bench_reports_every_configuration(tmp_path):
    p = subprocess.run([sys.executable, "-m", "runner", "bench", "--iterations", "2000",
                        "--repeat", "2", "--json", str(tmp_path / "b.json"),
                        "--results-dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, check=False,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "(4) enabled at runtime" in p.stdout
    doc = json.loads((tmp_path / "b.json").read_text())
    base, off, on, runtime = doc["configs"]
    for c in doc["configs"]:
        assert len(c["ns"]["kmalloc"]) == 2 and len(c["ns"]["pgalloc"]) == 2
    # (2) and (4) boot the same kernel; (1) has no tags at all.
    assert off["size"] == runtime["size"] and base["memory"]["code_tags"] == 0
    assert off["memory"]["code_tags"] == on["memory"]["code_tags"] > 0
    # page_ext only where profiling is on: 8 bytes per page, the same for (3) and (4).
    assert "page_ext" not in off["memory"]
    assert on["memory"]["page_ext"] == runtime["memory"]["page_ext"] > 0
    if doc["clock"].startswith("QEMU -icount"):
        # Instruction counts: profiling on always costs more than off.
        assert on["median_ns"]["kmalloc"] > off["median_ns"]["kmalloc"]
        assert on["median_ns"]["pgalloc"] > off["median_ns"]["pgalloc"]
