"""The arch records (kernel/arches/*.toml): each is complete, and the
host's `uname -m` maps to our name whatever the host is."""

import subprocess
import sys
from pathlib import Path

import pytest

from runner import arches, boot, guest, kconfig, tools
from runner.errors import UserError
from runner.targets import targets

ROOT = Path(__file__).resolve().parent.parent


def pose_as(monkeypatch, machine: str) -> None:
    monkeypatch.setattr(arches, "host_machine", lambda: machine)


@pytest.mark.parametrize("name", sorted(arches.ARCHES))
def test_every_uname_of_a_record_is_that_arch_and_native(monkeypatch, name):
    arch = arches.ARCHES[name]
    assert arch.uname, f"{arch.record} names no `uname -m`"
    for machine in arch.uname:
        pose_as(monkeypatch, machine)
        assert arches.host_arch() == name
        assert [a.name for a in arches.ARCHES.values() if a.native] == [name]
        # Native: the host's own compiler, and the other arches cross.
        assert arch.cross_compile == "" and arch.compiler == "gcc"
        for other in arches.ARCHES.values():
            if other is not arch:
                assert other.cross_compile == other.cross_prefix != ""
                assert tools.arch_needs(other)[other.compiler] == other.compiler_package


def test_an_arm64_host_runs_arm64_natively(monkeypatch, tmp_path):
    """With no --arch on an aarch64 host, arm64 is the host's arch (bisect
    and bench pick it), builds with the host's gcc, and boots without
    vng's --arch and on the host's root; x86_64 is then the foreign one."""
    pose_as(monkeypatch, "aarch64")
    assert arches.host_arch() == "arm64"
    arm64, x86 = arches.ARCHES["arm64"], arches.ARCHES["x86_64"]
    assert arm64.native and arm64.compiler == "gcc"
    assert not x86.native and x86.compiler == "x86_64-linux-gnu-gcc"
    inputs = guest.stage(tmp_path / guest.IN_DIR)
    cmds = {t.arch.name: boot.vng_command(boot.BootRequest(t, tmp_path / "Image", tmp_path, 60,
                                                           "tcg", inputs))
            for t in targets("arm64,x86_64", "default")}
    assert "--arch" not in cmds["arm64"]
    assert cmds["x86_64"][cmds["x86_64"].index("--arch") + 1] == "amd64"  # vng's name for it


def test_a_host_with_no_record_is_one_line(monkeypatch):
    pose_as(monkeypatch, "xtensa")
    with pytest.raises(UserError, match=r"host's arch \(xtensa\) has no record .*give --arch"):
        arches.host_arch()


def test_a_record_is_all_an_arch_needs(tmp_path):
    """A new file in the records' directory is a new arch: loaded, named by
    its file, its fragment the base config of its targets."""
    text = (arches.RECORDS / "riscv64.toml").read_text()
    (tmp_path / "riscv64.toml").write_text(text)
    (tmp_path / "newarch.toml").write_text(text.replace('name = "riscv64"', 'name = "newarch"'))
    loaded = arches.load(tmp_path)
    assert list(loaded) == ["newarch", "riscv64"]
    assert loaded["newarch"].config == loaded["riscv64"].config
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(UserError, match=r"bad.toml: its name must be its file's"):
        arches.load(tmp_path)
    (tmp_path / "bad.toml").write_text("name = 1")
    with pytest.raises(UserError, match=r"bad.toml is malformed .*x86_64.toml"):
        arches.load(tmp_path)
    # A value of the wrong kind is one line at load, not a traceback at boot.
    (tmp_path / "newarch.toml").unlink()
    for old, bad, says in (('vng_arch = "riscv64"', 'vng_arch = ["riscv64"]', "vng_arch"),
                           ('fragment = """', 'fragment = 1\nx = """', "AttributeError"),
                           ('default = true', 'default = "yes"', "default"),
                           ('[boot]', '[boot]\nmax_cpus = 1.5', "max_cpus"),
                           ('[boot]', '[boot]\nmemory = 64', "memory"),
                           ('[boot]', '[boot]\nkunit_shutdown = "poweroff"', "only where")):
        assert old in text
        (tmp_path / "bad.toml").write_text(
            text.replace('name = "riscv64"', 'name = "bad"').replace(old, bad, 1))
        with pytest.raises(UserError, match=says):
            arches.load(tmp_path)


def test_base_fragment_comes_from_the_record():
    """The arch's fragment follows the common ones: base-vng.config only
    where virtme-ng boots a userspace."""
    for t in targets(",".join(arches.ARCHES), "default"):
        frags = kconfig.fragments(t)
        common = ["base-common.config"] + ([] if t.arch.kunit_only else ["base-vng.config"])
        assert [f.name for f in frags[:len(common)]] == common
        own = frags[len(common)]
        assert own.name == f"base-{t.arch.name}.config"
        assert own.text == t.arch.config
        assert kconfig.wanted([own]), f"{t.arch.record} sets no option"
        assert all(o.startswith("CONFIG_") for o in t.arch.config_without)


def test_an_option_the_arch_cannot_have_need_not_stick(tmp_path, monkeypatch):
    """[config] without: THP on an arch without it is not required; any
    other option that does not stick is still an error."""
    import dataclasses

    t = targets("i386", "default")[0]
    tree = tmp_path / "tree"
    (tree / "mm").mkdir(parents=True)
    (tree / "mm" / "Kconfig").write_text("config TRANSPARENT_HUGEPAGE\nconfig KUNIT\n")
    bdir = tmp_path / "b"
    bdir.mkdir()
    (bdir / ".config").write_text("CONFIG_KUNIT=y\n")
    log = tmp_path / "log"
    monkeypatch.setattr(kconfig, "fragments", lambda _t: [
        kconfig.Fragment("x", "CONFIG_TRANSPARENT_HUGEPAGE=y\nCONFIG_KUNIT=y\n")])
    with pytest.raises(UserError, match="CONFIG_TRANSPARENT_HUGEPAGE=y"):
        kconfig.check(t, tree, bdir, log)
    without = dataclasses.replace(t, arch=dataclasses.replace(
        t.arch, config_without=("CONFIG_TRANSPARENT_HUGEPAGE",)))
    kconfig.check(without, tree, bdir, log)
    (bdir / ".config").write_text("")
    with pytest.raises(UserError, match="CONFIG_KUNIT=y"):
        kconfig.check(without, tree, bdir, log)


def test_install_reads_the_records_with_the_system_python():
    """.ci/install runs before the venv: the records load with python3
    and the standard library alone."""
    out = subprocess.run([sys.executable, "-S", "-m", "runner.arches", "packages"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for a in arches.ARCHES.values():
        assert a.qemu_package in out
        if not a.native:
            assert {a.compiler_package, *a.libc[1:]} <= set(out)


def test_a_kunit_only_arch_boots_qemu_alone_and_skips_programs_truly(tmp_path):
    """[boot] via = "qemu": QEMU with the record's machine and console,
    restart after KUnit, no userspace; its programs skip with a reason the
    skip checker holds true on that arch only."""
    from runner import skips
    from runner.guest import stage
    from runner.results import Status, TestResult
    [t] = targets("m68k", "default")
    assert t.arch.kunit_only and t.arch.why
    req = boot.BootRequest(t, tmp_path / "vmlinux", tmp_path, 60, "tcg", stage(tmp_path / "in"),
                           append=("kunit.filter_glob=x",))
    cmd = boot.qemu_command(req)
    assert cmd[0] == "qemu-system-m68k" and "-no-reboot" in cmd and "vng" not in " ".join(cmd)
    assert cmd[cmd.index("-append") + 1] == \
        "console=ttyGF0 kunit.filter_glob=x kunit_shutdown=reboot"
    why = arches.kunit_only_reason("m68k")
    assert why.startswith("m68k boots KUnit only: ") and arches.kunit_only_reason("x86_64") == ""
    tests: list[TestResult] = []
    from runner import pipeline
    pipeline.add_missing_expected(tests, "never reported", no_programs=why)
    programs = {s.name for s in pipeline.program_suites()}
    assert {r.name for r in tests if r.status == Status.SKIP} == programs
    assert {r.name for r in tests if r.status == Status.CRASHED} == \
        {s.name for s in pipeline.expected_suites()} - programs
    for arch, wrong in (("m68k", ""), ("x86_64", "the arch is x86_64, not m68k")):
        facts = skips.Facts({}, {}, None, arch)
        assert skips.why_false(why, facts) == wrong


def test_a_machine_with_fixed_memory_or_one_cpu_gets_what_it_takes(tmp_path):
    """m68k's virt takes one CPU; a board with fixed memory (sh4's r2d has
    64 MiB) gets that; a machine without limits takes the runner's 1G and
    2 CPUs."""
    import dataclasses

    from runner.guest import stage
    [m68k] = targets("m68k", "default")
    board = dataclasses.replace(m68k, arch=dataclasses.replace(m68k.arch, memory="64M"))
    for t, mem, cpus in ((m68k, "1G", "1"), (board, "64M", "1"),
                         (targets("mipsel", "default")[0], "1G", "1"),
                         (dataclasses.replace(m68k, arch=dataclasses.replace(
                             m68k.arch, max_cpus=0)), "1G", "2")):
        req = boot.BootRequest(t, tmp_path / "img", tmp_path, 60, "tcg", stage(tmp_path / "in"))
        cmd = boot.qemu_command(req)
        assert (cmd[cmd.index("-m") + 1], cmd[cmd.index("-smp") + 1]) == (mem, cpus)


def test_no_huge_pages_is_true_only_where_the_record_says_so():
    from runner import skips
    reason = "no huge pages on this machine: no /sys/kernel/mm/transparent_hugepage"
    thp = {"CONFIG_TRANSPARENT_HUGEPAGE": "y"}
    assert arches.ARCHES["s390x"].no_huge_pages
    assert skips.why_false(reason, skips.Facts(thp, {}, None, "s390x")) == ""
    assert "have huge pages" in skips.why_false(reason, skips.Facts(thp, {}, None, "x86_64"))
    assert "no CONFIG_TRANSPARENT_HUGEPAGE" in skips.why_false(
        reason, skips.Facts({}, {}, None, "s390x"))


def test_virtme_run_gets_what_vng_would_hand_it(tmp_path, monkeypatch):
    """[boot] via = "virtme-run" (i386: vng's --arch does not list it):
    the command is the one vng itself hands virtme-run for the same
    request, but for the arch: read from the installed vng through a
    virtme-run that only prints its arguments."""
    import dataclasses
    import json

    from runner.guest import stage
    [i386] = targets("i386", "default")
    [riscv] = targets("riscv64", "default")
    assert i386.arch.boot_via == "virtme-run" and not i386.arch.kunit_only
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "virtme-run").write_text(
        f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    (fake / "virtme-run").chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    inputs = dataclasses.replace(stage(tmp_path / "in"), root=root)
    image = tmp_path / "bzImage"
    image.write_bytes(b"")

    def request(t):
        return boot.BootRequest(t, image, tmp_path, 60, "tcg", inputs, append=("a=1",),
                                icount="6")
    ours = boot.vng_command(request(i386))
    assert Path(ours[0]).name == "virtme-run" and "vng" not in Path(ours[0]).name
    # vng for riscv64, with i386's kernel arguments, through the fake.
    as_vng = request(dataclasses.replace(riscv, arch=dataclasses.replace(
        riscv.arch, cmdline=i386.arch.cmdline)))
    env = dict(boot.vng_env(), PATH=f"{fake}:{boot.vng_env()['PATH']}")
    out = subprocess.run(boot.vng_command(as_vng), env=env, capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    theirs = json.loads(out)
    assert theirs[theirs.index("--arch") + 1] == "riscv64"
    theirs[theirs.index("--arch") + 1] = "i386"
    # QEMU's own options: vng ends the line with them ("--qemu-opts" takes
    # the rest); ours go one by one, so either way QEMU gets the same.
    assert theirs[theirs.index("--qemu-opts"):] == ["--qemu-opts", "-icount", "6"]
    theirs = theirs[:theirs.index("--qemu-opts")]
    assert [a for a in ours if a.startswith("--qemu-opt=")] == \
        ["--qemu-opt=-icount", "--qemu-opt=6"]
    ours = [a for a in ours if not a.startswith("--qemu-opt=")]

    def options(argv):
        """Options with their values, in any order."""
        pairs, i = [], 0
        while i < len(argv):
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                pairs.append((argv[i], argv[i + 1]))
                i += 2
            else:
                pairs.append((argv[i], None))
                i += 1
        return sorted(pairs, key=lambda p: (p[0], p[1] or ""))
    assert options(ours[1:]) == options(theirs)


def test_a_machine_that_cannot_restart_ends_kunit_with_a_power_off(tmp_path):
    """sparc64's firmware cannot restart (the kernel panicked "Reboot
    failed!" and QEMU ran on): its record ends KUnit with a power-off, which
    comes last on the command line so it wins over the selection's reboot;
    "reboot: Power down" then counts as the end, as the restart line does."""
    from runner.guest import MARKS, stage
    [t] = targets("sparc64", "default")
    assert t.arch.kunit_shutdown == "poweroff"
    req = boot.BootRequest(t, tmp_path / "image", tmp_path, 60, "tcg", stage(tmp_path / "in"),
                           append=("kunit_shutdown=reboot",))
    cmd = boot.qemu_command(req)
    assert cmd[cmd.index("-append") + 1].endswith(" kunit_shutdown=poweroff")
    assert MARKS["poweroff"] == b"reboot: Power down"
    assert targets("m68k", "default")[0].arch.kunit_shutdown == "reboot"
    text = (arches.RECORDS / "sparc64.toml").read_text()
    (tmp_path / "sparc64.toml").write_text(text.replace('"poweroff"', '"halt"'))
    with pytest.raises(UserError, match=r"kunit_shutdown must be \"reboot\" or \"poweroff\""):
        arches.load(tmp_path)


def test_only_the_records_own_end_finishes_a_kunit_guest(tmp_path):
    """Under kunit_shutdown, the restart line ends a guest; the power-off
    line only on a KUnit-only arch whose record ends KUnit so (sparc64).
    On a vng guest it ends userspace too, so without the done file (its
    script died) that guest did not finish."""
    from runner import pipeline
    from runner.guest import Outputs
    from runner.selection import KUNIT_SHUTDOWN

    def booted(*marks, timed_out=False):
        return boot.Boot(tmp_path / "console.log", Outputs(tmp_path), None if timed_out else 0,
                         1.0, "tcg", {m: 0.5 for m in marks})
    [sparc], [m68k], [x86] = (targets(a, "default") for a in ("sparc64", "m68k", "x86_64"))
    asked = [KUNIT_SHUTDOWN]
    assert pipeline.finished(sparc, asked, booted("poweroff"))
    assert not pipeline.finished(sparc, asked, booted("restart"))
    assert not pipeline.finished(sparc, asked, booted("poweroff", timed_out=True))
    assert pipeline.finished(m68k, asked, booted("restart"))
    assert not pipeline.finished(m68k, asked, booted("poweroff"))
    assert pipeline.finished(x86, asked, booted("restart"))
    assert not pipeline.finished(x86, asked, booted("poweroff"))
    assert not pipeline.finished(x86, [], booted("restart"))
    Outputs(tmp_path).done.write_text("")
    assert pipeline.finished(x86, [], booted())
