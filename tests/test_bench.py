"""runner bench's parsing and arithmetic, on a recorded real bench boot."""

import json
from pathlib import Path

from runner import bench

DATA = Path(__file__).resolve().parent / "data"
CONSOLE = (DATA / "x86_64-default-6.12.117-bench.console.log").read_text()
ALLOCINFO = (DATA / "x86_64-default-6.12.117-bench.allocinfo").read_text()


def test_figures_from_a_real_console():
    assert bench.figures(CONSOLE) == {"kmalloc": 6183893, "pgalloc": 15906474}


def test_memory_figures_from_a_real_boot():
    m = bench.memory_figures(CONSOLE, ALLOCINFO, code_tags=36400)
    # 1 GiB guest: 262144 pages x 8 bytes of page_ext.
    assert m == {"code_tags": 36400, "page_ext": 2097152, "slab_ext": 60000}


def test_no_figures_in_a_console_without_the_module():
    assert bench.figures((DATA / "x86_64-default-6.12.117.console.log").read_text()) == {}


def _result() -> bench.BenchResult:
    configs = []
    for c, (km, pg) in zip(bench.CONFIGS, [(100, 200), (101, 202), (110, 280), (112, 284)],
                           strict=True):
        r = bench.ConfigResult(c.number, c.name, c.variant, paper=c.paper,
                               size={"text": 10, "data": 5, "bss": 1, "dec": 16 + c.number},
                               memory={"code_tags": 8 * c.number})
        r.ns = {"kmalloc": [km, km + 2, km - 2], "pgalloc": [pg] * 3}
        configs.append(r)
    return bench.BenchResult("x86_64", "6.12.117", "src", "clock", 10, 3, configs)


def test_overhead_is_against_the_baseline_median():
    res = _result()
    assert res.overhead(res.configs[2], "kmalloc") == 10.0
    assert res.overhead(res.configs[3], "pgalloc") == 42.0
    assert res.configs[0].spread("kmalloc") == 4.0


def test_table_and_json(tmp_path):
    res = _result()
    text = bench.table(res)
    assert "(3) enabled by default" in text and "+10.00%" in text and "+40.02%" in text
    bench.write_json(res, tmp_path / "b.json")
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["schema"] == "allocprof-ktest/bench/1"
    assert doc["configs"][3]["overhead_pct"]["pgalloc"] == 42.0
    assert doc["configs"][1]["size"]["dec"] == 18
