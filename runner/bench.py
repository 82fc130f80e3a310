"""`runner bench`: the cover letter's overhead tables, measured here.

Four kernel configurations (the cover letter's (1)-(4)) are booted in
turn, repeat after repeat, so that drift on a noisy host hits them alike.
Each boot loads selftests/alloc_tag/module/alloc_tag_bench.ko, which
times kmalloc/kfree and __get_free_page/free_page loops on one CPU with
the kernel clock.  Under TCG the guest runs with QEMU -icount, so that
clock counts guest instructions and the figures repeat exactly; under
KVM it is wall time.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner import boot, build, guest, pipeline, source
from runner.errors import UserError
from runner.paths import check_dir
from runner.targets import ARCHES, Target
from runner.printer import PRINTER

# One guest instruction = 2^0 ns of guest time; sleep=off lets idle time
# jump to the next timer instead of following the host clock.
ICOUNT = "shift=0,sleep=off"
LOOPS = ("kmalloc", "pgalloc")
# alloc_tag_bench's iterations parameter is a uint.
MAX_ITERATIONS = (1 << 32) - 1
_FIGURE = re.compile(r"alloc_tag_bench: (\w+) iterations=(\d+) ns=(\d+)")
_PAGE_EXT = re.compile(r"allocated (\d+) bytes of page_ext")
_SLAB_EXT = re.compile(r"^\s*(\d+)\s+\d+\s+mm/slub\.c:\d+ func:alloc_slab_obj_exts\b", re.M)


@dataclass(frozen=True)
class Config:
    number: int
    name: str
    variant: str
    boot: str = "none"  # a key of targets.BOOT_VARIANTS
    enable_at_runtime: bool = False
    # The cover letter's overheads against (1), kmalloc and pgalloc, in %.
    paper: tuple[float, float] = (0.0, 0.0)


# On 6.12 the sysctl is writable after boot only if the boot option made
# profiling "supported": (4) is ENABLED_BY_DEFAULT=n booted with
# sysctl.vm.mem_profiling=0, then switched on.
CONFIGS = (
    Config(1, "baseline", "off"),
    Config(2, "compiled in, disabled", "default-off", paper=(0.43, 0.62)),
    Config(3, "enabled by default", "default", paper=(6.40, 40.02)),
    Config(4, "enabled at runtime", "default-off", "0", True, paper=(9.48, 41.41)),
)


@dataclass
class ConfigResult:
    number: int
    name: str
    build: str
    ns: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in LOOPS})
    size: dict[str, int] = field(default_factory=dict)  # text, data, bss, dec
    memory: dict[str, int] = field(default_factory=dict)  # bytes, where exposed
    paper: tuple[float, float] = (0.0, 0.0)

    def median(self, loop: str) -> float:
        return statistics.median(self.ns[loop]) if self.ns[loop] else float("nan")

    def spread(self, loop: str) -> float:
        """(max - min) / median over the repeats, in %."""
        v = self.ns[loop]
        return 100.0 * (max(v) - min(v)) / statistics.median(v) if v else float("nan")


@dataclass
class BenchResult:
    arch: str
    kernel_version: str
    source_id: str
    clock: str
    iterations: int
    repeat: int
    configs: list[ConfigResult]

    def overhead(self, cfg: ConfigResult, loop: str) -> float:
        base = self.configs[0].median(loop)
        return 100.0 * (cfg.median(loop) - base) / base


def figures(console: str) -> dict[str, int]:
    """The bench module's times from a console log, by loop name."""
    return {m.group(1): int(m.group(3)) for m in _FIGURE.finditer(console)}


def memory_figures(console: str, allocinfo: str, code_tags: int) -> dict[str, int]:
    out = {"code_tags": code_tags}
    m = _PAGE_EXT.search(console)
    if m:
        out["page_ext"] = int(m.group(1))
    slab = [int(x) for x in _SLAB_EXT.findall(allocinfo)]
    if slab:
        out["slab_ext"] = sum(slab)
    return out


def size_of(target: Target, vmlinux: Path) -> dict[str, int]:
    """`size vmlinux`: text, data, bss and their sum."""
    tool = target.arch.cross_compile + "size"
    p = subprocess.run([tool, str(vmlinux)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise UserError(f"{tool} {vmlinux} failed: {p.stderr.strip()}")
    text, data, bss, dec = p.stdout.splitlines()[1].split()[:4]
    return {"text": int(text), "data": int(data), "bss": int(bss), "dec": int(dec)}


def code_tag_bytes(target: Target, vmlinux: Path) -> int:
    """Size of the alloc_tags section: every built-in struct alloc_tag."""
    p = subprocess.run([target.arch.cross_compile + "nm", str(vmlinux)],
                       capture_output=True, text=True, check=False)
    syms = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in ("__start_alloc_tags", "__stop_alloc_tags"):
            syms[parts[2]] = int(parts[0], 16)
    if len(syms) != 2:
        return 0
    return syms["__stop_alloc_tags"] - syms["__start_alloc_tags"]


@dataclass
class _Kernel:
    target: Target
    built: build.Built
    module: Path  # alloc_tag_bench.ko built against it


def _kernels(opts: pipeline.RunContext, src: source.PreparedSource,
             arch: str) -> dict[int, _Kernel]:
    """The benchmark kernel of each configuration; (2) and (4) share one."""
    by_build: dict[str, tuple[build.Built, Path]] = {}
    out = {}
    for c in CONFIGS:
        t = Target(ARCHES[arch], c.variant, c.boot, bench=True)
        if t.build_name not in by_build:
            b = build.build(opts.cache, src, t, opts.jobs)
            ko = build.build_test_module(opts.cache, src, t, b).with_name("alloc_tag_bench.ko")
            by_build[t.build_name] = (b, ko)
        out[c.number] = _Kernel(t, *by_build[t.build_name])
    return out


def _boot_once(opts: pipeline.RunContext, c: Config, k: _Kernel, iterations: int,
               rundir: Path) -> tuple[boot.Boot, str, dict[str, int]]:
    """One boot of configuration @c: the console and the loops' times."""
    inputs = guest.stage(rundir / guest.IN_DIR, module=k.module,
                         module_env=guest.BENCH_MODULE_ENV,
                         env={guest.BENCH_ITERATIONS_ENV: str(iterations),
                              guest.BENCH_ENABLE_ENV: str(int(c.enable_at_runtime))},
                         root=pipeline.guest_root(opts, k.target))
    image = k.built.image
    b = boot.boot(boot.BootRequest(
        k.target, image, rundir, opts.boot_timeout, boot.accel_for(opts.cache, k.target, image),
        inputs, append=tuple(k.target.cmdline + ["kunit.enable=0"] + opts.append),
        icount=ICOUNT))
    build.check_booted(k.built, b.console)
    console = b.console.read_text(errors="replace")
    got = figures(console)
    if set(got) != set(LOOPS):
        raise UserError(f"bench ({c.number}) {c.name}: the module reported no figures; "
                        f"see the console in {b.console}")
    return b, console, got


def run(opts: pipeline.RunContext, arch: str, iterations: int, repeat: int) -> BenchResult:
    src = source.prepare(opts.cache, opts.kernel_src, opts.kernel_rev)
    kernels = _kernels(opts, src, arch)
    results = []
    for c in CONFIGS:
        k = kernels[c.number]
        vmlinux = k.built.build_dir / "vmlinux"
        results.append(ConfigResult(c.number, c.name, k.target.build_name, paper=c.paper,
                                    size=size_of(k.target, vmlinux),
                                    memory={"code_tags": code_tag_bytes(k.target, vmlinux)}))
    clock = ""
    # Repeats interleave the configurations: 1 2 3 4 1 2 3 4 ...
    for r in range(repeat):
        for c, res in zip(CONFIGS, results, strict=True):
            rundir = opts.results_dir / f"bench-{c.number}-{r + 1}"
            b, console, got = _boot_once(opts, c, kernels[c.number], iterations, rundir)
            clock = (f"QEMU -icount {ICOUNT} (guest instructions)" if b.accel == "tcg"
                     else "wall time (KVM)")
            for loop in LOOPS:
                res.ns[loop].append(got[loop])
            if r == 0:
                alloc = b.outputs.allocinfo
                res.memory.update(memory_figures(
                    console, alloc.read_text() if alloc.exists() else "",
                    res.memory["code_tags"]))
            PRINTER.info(f"bench ({c.number}) {c.name}, repeat {r + 1}/{repeat}: "
                         + ", ".join(f"{k} {v / 1e6:.1f} ms" for k, v in got.items()))
    return BenchResult(arch, src.version, src.source_id, clock, iterations, repeat, results)


def table(res: BenchResult) -> str:
    lines = [f"allocation overhead, {res.arch}, Linux {res.kernel_version}, "
             f"{res.iterations} iterations x {res.repeat} repeats; clock: {res.clock}",
             f"{'configuration':<28} {'kmalloc ms':>11} {'overhead':>9} {'(paper)':>8} "
             f"{'spread':>7} {'pgalloc ms':>11} {'overhead':>9} {'(paper)':>8} {'spread':>7}"]
    for c in res.configs:
        row = f"({c.number}) {c.name:<24}"
        for i, loop in enumerate(LOOPS):
            over = "" if c.number == 1 else f"{res.overhead(c, loop):+.2f}%"
            paper = "" if c.number == 1 else f"{c.paper[i]:+.2f}%"
            row += (f" {c.median(loop) / 1e6:>11.2f} {over:>9} {paper:>8}"
                    f" {c.spread(loop):>6.2f}%")
        lines.append(row)
    lines += ["", f"{'size vmlinux':<28} {'text':>10} {'data':>10} {'bss':>10} {'dec':>10} "
              f"{'diff':>9}"]
    base = res.configs[0].size.get("dec", 0)
    for c in res.configs:
        s = c.size
        diff = "" if c.number == 1 else f"{s['dec'] - base:+d}"
        lines.append(f"({c.number}) {c.name:<24} {s['text']:>10} {s['data']:>10} "
                     f"{s['bss']:>10} {s['dec']:>10} {diff:>9}")
    lines += ["", f"{'memory (bytes)':<28} {'code tags':>10} {'page_ext':>10} {'slab ext':>10}"]
    for c in res.configs:
        m = c.memory
        lines.append(f"({c.number}) {c.name:<24} {m.get('code_tags', 0):>10} "
                     f"{m.get('page_ext', 0):>10} {m.get('slab_ext', 0):>10}")
    return "\n".join(lines)


def check_output(opt: str, path: Path) -> None:
    """@path (of option @opt) can be written once the benchmark is done:
    its directory exists and is writable, and it is no directory itself."""
    fix = f"give {opt} a file in a writable directory that exists"
    parent = path.absolute().parent
    check_dir(parent, f"{opt} {path}: the directory", fix)
    if not parent.is_dir():
        raise UserError(f"{opt} {path}: the directory {parent} does not exist: {fix}")
    if path.is_dir():
        raise UserError(f"{opt} {path} is a directory: {fix}")


def write_json(res: BenchResult, path: Path) -> None:
    doc = {"schema": "allocprof-ktest/bench/1", **asdict(res)}
    for c, d in zip(res.configs, doc["configs"], strict=True):
        d["median_ns"] = {loop: c.median(loop) for loop in LOOPS}
        d["overhead_pct"] = {loop: res.overhead(c, loop) for loop in LOOPS}
    path.write_text(json.dumps(doc, indent=1) + "\n")


def plot(res: BenchResult, path: Path) -> None:
    """Overhead per configuration, ours beside the cover letter's."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install matplotlib "
                        "(or .ci/install)") from None
    configs = res.configs[1:]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, (i, loop) in zip(axes, enumerate(LOOPS), strict=True):
        x = range(len(configs))
        ours = [res.overhead(c, loop) for c in configs]
        paper = [c.paper[i] for c in configs]
        ax.bar([v - 0.2 for v in x], ours, 0.4, label=f"measured ({res.arch})")
        ax.bar([v + 0.2 for v in x], paper, 0.4, label="cover letter (Xeon, 6.8-rc1)")
        ax.set_xticks(list(x), [f"({c.number})\n{c.name}" for c in configs], fontsize=8)
        ax.set_title(f"{loop} overhead vs (1) baseline")
        ax.set_ylabel("%")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.legend(fontsize=8)
    fig.suptitle(f"Linux {res.kernel_version}; clock: {res.clock}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
