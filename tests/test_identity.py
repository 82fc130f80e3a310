"""The kernel that boots is the kernel just built (issue 21, section 0).

The ccache hole is reproduced with the real gcc and ccache: an object that
.incbin's a file of the same size but other bytes must be compiled again.
The banner checks run on consoles made here; a real kernel proves the whole
chain in tests/test_faults.py and in every acceptance run."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner import build
from runner.errors import InfraError

needs_ccache = pytest.mark.skipif(not (shutil.which("ccache") and shutil.which("gcc")),
                                  reason="needs gcc and ccache (apt-get install gcc ccache)")


def _compile(cc: list[str], d: Path, out: str) -> bytes:
    env = dict(os.environ, CCACHE_DIR=str(d / "ccache"), CCACHE_DEPEND="1")
    subprocess.run(cc + ["-c", "-MD", "-MF", "piggy.d", "piggy.S", "-o", out], cwd=d, env=env,
                   check=True)
    return (d / out).read_bytes()


def _two_payloads(cc: list[str], d: Path) -> tuple[bytes, bytes]:
    """Compiles an .incbin of payload.bin twice, with two payloads of one size."""
    (d / "piggy.S").write_text('.section .rodata\n.incbin "payload.bin"\n')
    (d / "payload.bin").write_bytes(b"A" * 4096)
    first = _compile(cc, d, "a.o")
    (d / "payload.bin").write_bytes(b"B" * 4096)
    return first, _compile(cc, d, "b.o")


@needs_ccache
def test_ccache_depend_mode_alone_returns_the_old_payload(tmp_path):
    """The hole itself: if this ever passes, ccache learned to see .incbin."""
    first, second = _two_payloads(["ccache", "gcc"], tmp_path)
    assert first == second


@needs_ccache
def test_embedding_sources_bypass_ccache(tmp_path):
    first, second = _two_payloads([str(build.CCACHE_CC), "gcc"], tmp_path)
    assert first != second
    assert b"B" * 4096 in second


@needs_ccache
def test_other_sources_still_hit_the_cache(tmp_path):
    (tmp_path / "t.c").write_text("int x = 1;\n")
    env = dict(os.environ, CCACHE_DIR=str(tmp_path / "ccache"), CCACHE_DEPEND="1")
    for _ in range(2):
        subprocess.run([str(build.CCACHE_CC), "gcc", "-c", "-MD", "-MF", "t.d", "t.c"],
                       cwd=tmp_path, env=env, check=True)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True,
                           text=True, check=True).stdout
    hits = dict(line.split("\t", 1) for line in stats.splitlines() if "\t" in line)
    assert int(hits["direct_cache_hit"]) == 1


def _built(tmp_path: Path, identity: str, banner_in_vmlinux: str | None = None) -> build.Built:
    bdir = tmp_path / "build"
    bdir.mkdir(exist_ok=True)
    banner = banner_in_vmlinux or (f"Linux version 6.12.118 (allocprof@ktest) (gcc 12) "
                                   f"#3 SMP PREEMPT_DYNAMIC {identity}\n")
    (bdir / "vmlinux").write_bytes(b"\0" * 5_000_000 + banner.encode() + b"\0" * 100)
    return build.Built(bdir / "bzImage", bdir, bdir / "build.log", rebuilt=True,
                       identity=identity)


def test_vmlinux_banner_is_checked(tmp_path):
    b = _built(tmp_path, "allocprof-0123456789abcdef")
    build.check_vmlinux(b)
    b.identity = "allocprof-fedcba9876543210"
    with pytest.raises(InfraError, match="does not carry the identity"):
        build.check_vmlinux(b)


def test_booted_kernel_must_carry_the_identity(tmp_path):
    b = _built(tmp_path, "allocprof-0123456789abcdef")
    console = tmp_path / "console.log"
    console.write_text("[    0.000000] Linux version 6.12.118 (allocprof@ktest) (gcc 12) #3 SMP "
                       "PREEMPT_DYNAMIC allocprof-0123456789abcdef\nKTAP version 1\n")
    assert build.check_booted(b, console).endswith("allocprof-0123456789abcdef")
    # The case: vmlinux was #17, the image that booted still #7.
    console.write_text("[    0.000000] Linux version 6.12.118 (allocprof@ktest) (gcc 12) #7 SMP "
                       "PREEMPT_DYNAMIC allocprof-aaaaaaaaaaaaaaaa\n")
    with pytest.raises(InfraError, match="not the one just built"):
        build.check_booted(b, console)
    # A prefix of the identity is no match.
    console.write_text("Linux version 6.12.118 #3 SMP allocprof-0123456789abcdefff\n")
    with pytest.raises(InfraError):
        build.check_booted(b, console)


def test_no_banner_is_left_to_the_results(tmp_path):
    b = _built(tmp_path, "allocprof-0123456789abcdef")
    console = tmp_path / "console.log"
    console.write_text("SeaBIOS\nBooting from ROM...\n")
    assert build.check_booted(b, console) == ""


def test_identity_fits_uts_version():
    # "#NNNNN SMP PREEMPT_DYNAMIC " + the identity within __NEW_UTS_LEN (64).
    assert len("#99999 SMP PREEMPT_DYNAMIC " + build.IDENTITY_PREFIX + "0" * 16) <= 64
