"""Out-of-tree (O=) kernel builds, one build directory per (source, arch,
variant), incremental, through ccache when it is installed."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from runner import contracts, kconfig, overlay, proc, tools
from runner.cache import Cache
from runner.layout import OUR_SELFTESTS, UPSTREAM_SELFTESTS, upstream_program_name
from runner.errors import InfraError, UserError
from runner.lock import exclusive
from runner.printer import PRINTER
from runner.source import PreparedSource
from runner.targets import Target

# Bump when the make targets or flags change, so stamps from before rebuild.
BUILD_RECIPE = "image+modules/3"
BUILT_STAMP = ".allocprof-built"  # the fingerprint of the image in a build directory
# CC for kernel and module builds: ccache, except for sources that embed
# another file (.incbin), whose bytes ccache's depend mode never sees.
CCACHE_CC = Path(__file__).resolve().parent / "ccache-cc.sh"
# The image's identity is part of its banner: "Linux version ... #N SMP ...
# allocprof-<16 hex digits>" (KBUILD_BUILD_TIMESTAMP; UTS_VERSION holds 64).
IDENTITY_PREFIX = "allocprof-"
# Lines that say what went wrong, before make's own "Error N" summaries.
_ERROR = re.compile(r"(?:^|\s)(?:error|fatal error):|undefined reference|"
                    r"No rule to make target|\*\*\* (?!\[)")
_MAKE_ERROR = re.compile(r"Error \d+")


@dataclass
class Built:
    image: Path
    build_dir: Path
    log: Path
    rebuilt: bool
    seconds: float = 0.0  # make's time (0 when the fingerprint matched)
    files: int = 0  # files make built
    identity: str = ""  # in the banner of this image: what boots must say it

    def config(self) -> dict[str, str]:
        return kconfig.read_options((self.build_dir / ".config").read_text())


def locked(built: Built):
    """The build directory's lock: held while anything in it is made."""
    return exclusive(built.build_dir.with_suffix(".lock"))


def build_dir(cache: Cache, src: PreparedSource, target: Target) -> Path:
    return cache.build_dir(src.key, target.build_name)


def make_env(target: Target, cache: Cache, identity: str = "") -> dict[str, str]:
    """@identity: the image's own, in its banner; only init/version*.o
    differ between two identities."""
    env = dict(os.environ)
    env["ARCH"] = target.arch.kernel_arch
    if target.arch.cross_compile:
        env["CROSS_COMPILE"] = target.arch.cross_compile
    # Fixed build identity but for the image's fingerprint: reproducible
    # images, and ccache hits across build directories.
    env["KBUILD_BUILD_TIMESTAMP"] = identity or "allocprof-ktest"
    env["KBUILD_BUILD_USER"] = "allocprof"
    env["KBUILD_BUILD_HOST"] = "ktest"
    env["CCACHE_DIR"] = str(cache.ccache)
    env.setdefault("CCACHE_MAXSIZE", "5G")
    # ccache's depend mode: the compiler runs once, on the source, and
    # ccache reads the includes from kbuild's -MMD file.  From an empty
    # cache, mm/ (62 files) took 28% longer than plain gcc in ccache's
    # default mode (the preprocessor runs twice), 2% in depend mode.
    # (CCACHE_NOCPP2 was 6%, but compiling the preprocessed output hides
    # the warnings Kconfig's cc-option probes look for: it turned
    # CONFIG_CC_HAS_INT128 off.)
    env.setdefault("CCACHE_DEPEND", "1")
    # No CCACHE_BASEDIR: ccache would rewrite the source paths to relative
    # ones but not kbuild's -fmacro-prefix-map, and __FILE__ (so every
    # tag's file name in /proc/allocinfo) would keep the build's path.
    env.pop("CCACHE_BASEDIR", None)
    env["LC_ALL"] = "C"
    return env


def compiler(target: Target) -> str:
    return target.arch.compiler


def cached_compiler(target: Target) -> str:
    """make's CC: through ccache where it is installed (see CCACHE_CC)."""
    cc = compiler(target)
    return f"{CCACHE_CC} {cc}" if shutil.which("ccache") else cc


def require_toolchain(target: Target) -> None:
    tools.require(tools.BUILD_TOOLS, "building a kernel")
    tools.require(tools.HEADERS, "building a kernel")
    cc = compiler(target)
    package = "gcc" if target.arch.native else target.arch.compiler_package
    tools.require({cc: package}, f"building for {target.arch.name}")


def first_error(log: Path) -> str:
    """The first compiler or make error of a build log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no build log)"
    for line in lines:
        if "No space left on device" in line:
            return line.strip()
    for rx in (_ERROR, _MAKE_ERROR):
        for line in lines:
            if rx.search(line):
                return line.strip()
    return lines[-1].strip() if lines else "(empty build log)"


def _fingerprint(src: PreparedSource, target: Target, bdir: Path) -> str:
    """Everything that decides the image; equal prints skip make entirely."""
    h = hashlib.sha256()
    h.update(f"{BUILD_RECIPE}\0{src.key}\0{src.source_id}\0{target.build_name}\0".encode())
    h.update((bdir / ".config").read_bytes())
    for f in sorted((src.tree / src.layout.layout.kunit_subdir).glob("*")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def build(cache: Cache, src: PreparedSource, target: Target, jobs: int | None = None,
          verbose: bool = False) -> Built:
    require_toolchain(target)
    bdir = build_dir(cache, src, target)
    # Held by this run while it lives: `runner cache prune` leaves it be.
    cache.keep(bdir)
    cache.keep(src.tree)
    bdir.mkdir(parents=True, exist_ok=True)
    log = bdir / "build.log"
    env = make_env(target, cache)
    with exclusive(bdir.with_suffix(".lock")):
        free = shutil.disk_usage(bdir).free
        if free < 1_500_000_000:
            raise UserError(
                f"not enough disk space to build in {bdir}: {free >> 20} MiB free, "
                "1500 MiB needed; free some space or set ALLOCPROF_CACHE"
            )
        log.write_text("")
        kconfig.configure(target, src.tree, bdir, env, log)
        image = bdir / target.arch.image
        stamp = bdir / BUILT_STAMP
        fp = _fingerprint(src, target, bdir)
        done = stamp.read_text().split("\n") if stamp.exists() else []
        if image.exists() and len(done) == 2 and done[0] == fp:
            built = Built(image, bdir, log, rebuilt=False, identity=done[1])
            check_vmlinux(built)
            return built
        stamp.unlink(missing_ok=True)
        identity = IDENTITY_PREFIX + fp[:16]
        env = make_env(target, cache, identity)
        cc = cached_compiler(target)
        # "modules" writes Module.symvers, which the helper module needs.
        cmd = ["make", f"O={bdir}", f"-j{jobs or os.cpu_count() or 1}", f"CC={cc}",
               image.name, "modules"]
        PRINTER.info(f"building {target.build_name} kernel from {src.source_id} in {bdir}")
        clean = not image.exists()
        counted = bdir / ".allocprof-files"
        expected = int(counted.read_text()) if clean and counted.exists() else None
        dotconfig_before = (bdir / ".config").read_bytes()
        started = time.monotonic()
        rc = _make_with_progress(cmd, src.tree, env, log, f"building {target.build_name}",
                                 expected)
        seconds = time.monotonic() - started
        if rc != 0 or not image.exists():
            err = first_error(log)
            if "No space left on device" in err:
                raise UserError(f"disk full while building {target.name}: free space "
                                f"or set ALLOCPROF_CACHE (log: {log})")
            raise UserError(f"kernel build failed for {target.name}: {err} (log: {log})")
        if dotconfig_before != (bdir / ".config").read_bytes():
            # make's syncconfig rewrote it: what we asked for must still stick.
            kconfig.check(target, src.tree, bdir, log)
        built = Built(image, bdir, log, rebuilt=True, seconds=seconds,
                      files=_files_built(log), identity=identity)
        check_vmlinux(built)
        # After make: the image is of the .config make left.
        stamp.write_text(f"{_fingerprint(src, target, bdir)}\n{identity}")
        if clean:
            counted.write_text(str(built.files))
        return built


def _banner_has(path: Path, identity: str) -> bool:
    """Whether the file at @path has a "Linux version" banner that ends
    in @identity (read in pieces: vmlinux is tens of MB)."""
    want = f" {identity}".encode()
    tail = b""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            data = tail + chunk
            at = data.find(b"Linux version ")
            while at >= 0:
                line = data[at:at + 512].split(b"\n", 1)[0]
                if line.endswith(want) or want + b"\0" in line or want + b" " in line:
                    return True
                at = data.find(b"Linux version ", at + 1)
            tail = data[-600:]
    return False


def check_vmlinux(built: Built) -> None:
    """The build's vmlinux carries the identity its stamp promises."""
    vmlinux = built.build_dir / "vmlinux"
    if not vmlinux.exists() or not _banner_has(vmlinux, built.identity):
        raise InfraError(f"{vmlinux} does not carry the identity {built.identity} of "
                         f"this build: delete {built.build_dir} and run again")


_BANNER = re.compile(r"Linux version (\S+) .*")


def check_booted(built: Built, console: Path) -> str:
    """The kernel that booted is the one just built: its banner on the
    console carries this build's identity.  Returns the banner; raises
    InfraError on another kernel's banner.  No banner at all is a kernel
    that died before printing it: its results say so."""
    with open(console, "rb") as f:
        for raw in f:
            if b"Linux version " not in raw:
                continue
            line = raw.decode("utf-8", "replace").strip()
            m = _BANNER.search(line)
            if not m:
                continue
            banner = m.group(0)
            if not re.search(rf"\s{re.escape(built.identity)}(?:\s|$)", banner):
                raise InfraError(
                    f"the kernel that booted is not the one just built: its banner is "
                    f"'{banner[:200]}', the build in {built.build_dir} is {built.identity}; "
                    f"delete that directory and run again")
            return banner
    return ""


PROGRESS_EVERY = 30.0  # seconds between two progress lines of a build
_BUILT_LINE = re.compile(rb"^  (?:CC|AS|LD|AR|HOSTCC|OBJCOPY)\b", re.M)


def _files_built(log: Path) -> int:
    try:
        return len(_BUILT_LINE.findall(log.read_bytes()))
    except OSError:
        return 0


def _make_with_progress(cmd: list[str], cwd: Path, env: dict[str, str], log: Path,
                        what: str, expected: int | None) -> int:
    """Runs make into @log, telling how far it got every PROGRESS_EVERY s
    (out of @expected files, what the last clean build of it built)."""
    started = time.monotonic()
    return proc.run(cmd, cwd=cwd, env=env, log=log, check=False, every=PROGRESS_EVERY,
                    progress=lambda: PRINTER.progress(what, _files_built(log), expected,
                                                      started)).returncode


def _headers(cache: Cache, src: PreparedSource, target: Target, built: Built) -> Path:
    """The kernel's uapi headers (make headers_install), for selftests that
    include what the C library's headers do not have yet."""
    hdr = built.build_dir / "usr" / "include"
    stamp = built.build_dir / ".allocprof-headers"
    # The uapi headers are the tree's: a kernel rebuilt for a new .config
    # or KUnit file leaves them as they are.
    fp = f"{src.key}\0{src.source_id}\0{target.arch.name}"
    if hdr.is_dir() and stamp.exists() and stamp.read_text() == fp:
        return hdr
    log = built.build_dir / "headers.log"
    _make(["make", f"O={built.build_dir}", "headers_install"], src.tree,
          make_env(target, cache), log, f"uapi headers for {target.name}")
    stamp.write_text(fp)
    return hdr


def _make(cmd: list[str], cwd: Path | None, env: dict[str, str], log: Path, what: str) -> None:
    log.write_text("")  # this step's log alone
    if proc.run(cmd, cwd=cwd, env=env, log=log, check=False).returncode != 0:
        raise proc.failure(what, first_error(log), f"see {log}")


def build_selftests(cache: Cache, src: PreparedSource, target: Target, built: Built) -> Path:
    """Builds our selftests, and upstream's alloc_tag selftests where the
    tree has them, for the target with their lib.mk Makefiles (statically
    linked, so the same binaries run on any guest root).  Returns the one
    directory the guest runs every *_test program of."""
    out = built.build_dir / "selftests" / "alloc_tag"
    cc = compiler(target)
    hdr = _headers(cache, src, target, built)
    # The tree's contracts beside our selftests' sources, so that plain
    # "make run_tests" in the tree installs them too (TEST_FILES); those of
    # the arch only beside the programs built for it.
    overlay.write_if_changed(src.tree / OUR_SELFTESTS / contracts.CONTRACT_FILE,
                             contracts.text(contracts.read(src.tree, src.layout)))
    contract = contracts.text(contracts.read(src.tree, src.layout, target.arch.srcarch))
    sources = [OUR_SELFTESTS] + ([UPSTREAM_SELFTESTS] if src.layout.upstream_selftests else [])
    stamp = built.build_dir / ".allocprof-selftests"
    # Userspace programs: the kernel's own rebuilds leave them as they are.
    fp = _inputs_print(None, [src.tree / d for d in sources] + [
        src.tree / "tools/testing/selftests/lib.mk",
        src.tree / "tools/testing/selftests/kselftest.h", hdr / "linux"],
        src.key, src.source_id, *_compilers(cc))
    if out.is_dir() and stamp.exists() and stamp.read_text() == fp:
        overlay.write_if_changed(out / contracts.CONTRACT_FILE, contract)
        return out
    stamp.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, LC_ALL="C")
    env.pop("ARCH", None)  # lib.mk's ARCH is the userspace one
    dirs = [(OUR_SELFTESTS, out, "selftests.log", "selftest build")]
    if src.layout.upstream_selftests:
        dirs.append((UPSTREAM_SELFTESTS, built.build_dir / "selftests" / "upstream",
                     "upstream-selftests.log", "upstream alloc_tag selftest build"))
    for rel, dest, logname, what in dirs:
        dest.mkdir(parents=True, exist_ok=True)
        cmd = ["make", "-C", str(src.tree / rel), f"-j{os.cpu_count() or 1}", f"OUTPUT={dest}",
               f"CC={cc}", "LDFLAGS=-static", f"KHDR_INCLUDES=-isystem {hdr}",
               # The helper modules are built against the test kernel by
               # build_test_module, not against the host's.
               "TEST_GEN_MODS_DIR=", "all"]
        _make(cmd, None, env, built.build_dir / logname, f"{what} for {target.name}")
    (out / contracts.CONTRACT_FILE).write_text(contract)
    for prog in src.layout.upstream_selftests:
        # Upstream's programs run beside ours, named as their suites are.
        shutil.copy2(built.build_dir / "selftests" / "upstream" / prog,
                     out / upstream_program_name(prog))
    stamp.write_text(fp)
    return out


def _compilers(cc: str) -> list[str]:
    """What of the host decides how the selftests build: the compiler's
    version, the 32-bit ones the Makefile may pick (CC32) and the flags
    from the environment."""
    version = proc.run([cc, "--version"], check=False).stdout.split("\n")[0] \
        if shutil.which(cc) else "-"
    m32 = sorted(str(p) for p in Path("/usr/lib/gcc").glob("*/*/32"))
    return [cc, shutil.which(cc) or "", version, shutil.which("i686-linux-gnu-gcc") or "",
            *m32, *(f"{k}={os.environ.get(k, '')}" for k in ("CFLAGS", "LDFLAGS", "CC32"))]


def _inputs_print(built: Built | None, paths: list[Path], *extra: str) -> str:
    """What decides a guest program: every file under @paths, @extra (the
    compilers) and, for a module built against @built, that kernel's
    fingerprint."""
    h = hashlib.sha256()
    kernel = built.build_dir / BUILT_STAMP if built else None
    h.update(kernel.read_bytes() if kernel and kernel.exists() else b"-")
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                h.update(f"\0{f.relative_to(p.parent)}\0".encode() + f.read_bytes())
    h.update("\0".join(extra).encode())
    return h.hexdigest()


def build_test_module(cache: Cache, src: PreparedSource, target: Target, built: Built) -> Path:
    """Builds selftests/alloc_tag/module against this kernel (kbuild M=),
    in a copy inside the build directory; returns the .ko."""
    mdir = built.build_dir / "test-module"
    mdir.mkdir(exist_ok=True)
    for f in (overlay.selftest_dir() / "module").iterdir():
        if f.is_file():
            overlay.write_if_changed(mdir / f.name, f.read_text())
    log = built.build_dir / "test-module.log"
    ko = mdir / "alloc_tag_test_mod.ko"
    stamp = built.build_dir / ".allocprof-module"
    fp = _inputs_print(built, [overlay.selftest_dir() / "module"])
    modules = [mdir / f"{c.stem}.ko" for c in (overlay.selftest_dir() / "module").glob("*.c")]
    if all(m.exists() for m in modules) and stamp.exists() and stamp.read_text() == fp:
        return ko
    stamp.unlink(missing_ok=True)
    cc = cached_compiler(target)
    cmd = ["make", "-C", str(src.tree), f"O={built.build_dir}", f"M={mdir}", f"CC={cc}",
           "modules"]
    _make(cmd, None, make_env(target, cache), log, f"helper module build for {target.name}")
    if not ko.exists():
        raise UserError(f"helper module build failed for {target.name}: {first_error(log)} "
                        f"(log: {log})")
    stamp.write_text(fp)
    return ko
