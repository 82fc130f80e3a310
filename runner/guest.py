"""The contract between the host and the guest: what goes in, what comes
out, and the marks the guest leaves on the console.

Everything the guest runs is staged once into one directory of the run
(IN_DIR): guest.sh, the selftest programs, and the helper modules in
module/ beside them, where the programs look (as lib.mk installs them).  A guest on
the host's root reads it where it is; a foreign guest gets it as one
read-only share (one share keeps the kernel command line short: riscv64
cuts it at 1024 bytes, and vng spends about 100 on each).  The guest
writes into OUT_DIR only the files Outputs names, which the host reads."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "guest.sh"
IN_DIR = "guest-in"  # in a run's directory: what the guest runs
OUT_DIR = "guest"  # in a run's directory: what the guest writes
SELFTESTS = "selftests"
MODULES = "module"

# Environment guest.sh reads (its NAME=VALUE arguments).
BENCH_MODULE_ENV = "ALLOCPROF_BENCH_MODULE"  # the benchmark module: bench mode
BENCH_ITERATIONS_ENV = "ALLOCPROF_BENCH_ITERATIONS"
BENCH_ENABLE_ENV = "ALLOCPROF_BENCH_ENABLE"  # 1: profiling switched on after boot

# What guest.sh prints at each step (its mark()), to /dev/kmsg.
MARK = "runner-guest: "
# Console lines the host times as they arrive: the kernel's first line
# ends vng's and QEMU's start; the guest's last line, or the restart that
# follows KUnit under kunit_shutdown=reboot, starts the power-off.
MARKS = {"kernel": b"Linux version ", "done": f"{MARK}done".encode(),
         "restart": b"reboot: Restarting system", "poweroff": b"reboot: Power down"}


@dataclass(frozen=True)
class Inputs:
    """What the guest runs, staged in @dir (see stage())."""

    dir: Path
    selftests: bool = False  # @dir/selftests holds programs to run
    module: str = ""  # a module of @dir/module whose path goes in @module_env
    module_env: str = BENCH_MODULE_ENV
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # the guest's root; None: the host's

    @property
    def script(self) -> Path:
        return self.dir / SCRIPT.name


def stage(indir: Path, selftests: Path | None = None, module: Path | None = None,
          keep: Callable[[str], bool] | None = None, **inputs) -> Inputs:
    """Stages into @indir guest.sh, the programs of @selftests (those whose
    name @keep keeps) and every module beside @module: in the programs'
    module/ when there are programs, else in @indir/module with @module's
    path for guest.sh (the benchmark).  @inputs are the other fields of
    Inputs.  A copy of its own: another run of the same kernel may rebuild
    them while this guest runs."""
    if indir.exists():
        shutil.rmtree(indir)
    indir.mkdir(parents=True)
    shutil.copy2(SCRIPT, indir / SCRIPT.name)
    if selftests is not None:
        def unwanted(_dir: str, names: list[str]) -> list[str]:
            return [n for n in names if n.endswith("_test") and keep and not keep(n)]
        shutil.copytree(selftests, indir / SELFTESTS, ignore=unwanted)
    modules = indir / SELFTESTS / MODULES if selftests is not None else indir / MODULES
    if module is not None:
        modules.mkdir(exist_ok=True)
        for ko in module.parent.glob("*.ko"):
            shutil.copy2(ko, modules / ko.name)
    named = module.name if module is not None and selftests is None else ""
    return Inputs(indir, selftests=selftests is not None, module=named, **inputs)


@dataclass(frozen=True)
class Outputs:
    """What the guest writes (guest.sh), and nothing else."""

    dir: Path

    @property
    def done(self) -> Path:
        """Written last: the guest got to the end."""
        return self.dir / "guest-done"

    def program_ktap(self, suite: str) -> Path:
        """A selftest program's output (its suite is its name)."""
        return self.dir / f"selftest-{suite}.ktap"

    def program_exit(self, suite: str) -> Path:
        """"exit=N": how the program ended (124 is timeout's kill)."""
        return self.dir / f"selftest-{suite}.exit"

    @property
    def allocinfo(self) -> Path:
        """/proc/allocinfo before the benchmark ran (bench mode only)."""
        return self.dir / "allocinfo"

    def clear(self) -> None:
        """Makes the directory, with nothing left from an earlier boot."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.iterdir():
            if stale.is_file():
                stale.unlink()
