"""Contracts read from real kernel sources (Debian's 6.12 and 7.3), and the
skip reasons checked against what the runner knows (issue 21, sections 1
and 2)."""

import pytest

from runner import contracts, layout, skips, source
from runner.cache import Cache
from runner.results import RunInfo, RunResult, Status
from runner.results import TestResult as Result

WANT = {
    "6.12": {"ALLOCINFO_VERSION": "1.0", "ACCURATE_MARKER": "no",
             "SYSCTL_UNSWITCHABLE": "readonly", "BOOT_WRITE": "generic",
             "BOOT_GRAMMAR": "kstrtobool", "BOOT_MESSAGE": "no", "COMPRESSED_SYSCTL": "no",
             "ALLOCINFO_UNSUPPORTED": "present", "UNLOAD_REPORT": "warn",
             "MODULE_TAGS": "freed", "SHOWMEM_HEADER": "plain", "IOCTL": "no"},
    "7.3": {"ALLOCINFO_VERSION": "2.0", "ACCURATE_MARKER": "yes",
            "SYSCTL_UNSWITCHABLE": "handler", "BOOT_WRITE": "ignored",
            "BOOT_GRAMMAR": "compressed", "BOOT_MESSAGE": "yes", "COMPRESSED_SYSCTL": "yes",
            "ALLOCINFO_UNSUPPORTED": "absent", "UNLOAD_REPORT": "info",
            "MODULE_TAGS": "kept", "SHOWMEM_HEADER": "state", "IOCTL": "yes"},
}


@pytest.fixture(scope="module", params=["6.12", "7.3"])
def real_tree(request):
    """The Debian kernel source, prepared as a run prepares it (7.3 is
    fetched from Debian's archive once)."""
    src = None if request.param == "6.12" else f"debian:linux-source-{request.param}"
    try:
        prepared = source.prepare(Cache.open(), src)
    except Exception as e:  # noqa: BLE001 - say why there is no tree
        pytest.skip(f"linux-source-{request.param} is not available here: {e}")
    return request.param, prepared


def test_contracts_of_real_sources(real_tree):
    version, src = real_tree
    assert contracts.read(src.tree, src.layout) == WANT[version]


def test_every_contract_has_its_reason():
    for c in contracts.CONTRACTS:
        assert c.why and c.what and len(c.values) >= 2, c.name
    assert len({c.name for c in contracts.CONTRACTS}) == len(contracts.CONTRACTS)


def test_unknown_code_is_a_one_line_error(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "alloc_tag.c").write_text("/* rewritten */\n")
    tl = layout.TreeLayout(layout.LAYOUTS[1], "6.99.0", ())
    with pytest.raises(Exception, match="cannot read the ALLOCINFO_VERSION contract"):
        contracts.read(tmp_path, tl)


def test_a_probe_reads_the_code_not_the_version(tmp_path):
    """A 6.12 tree with the boot-write fix backported reads "ignored"."""
    text = ('static int proc_mem_profiling_handler(const struct ctl_table *table, int write,\n'
            '\t\tvoid *buffer, size_t *lenp, loff_t *ppos)\n{\n'
            '\tif (write && !current->mm)\n\t\treturn 0;\n\treturn 0;\n}\n'
            'static struct ctl_table memory_allocation_profiling_sysctls[] = {\n'
            '\t{\n\t\t.procname\t= "mem_profiling",\n\t\t.mode\t\t= 0644,\n'
            '\t\t.proc_handler\t= proc_mem_profiling_handler,\n\t},\n};\n')
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "alloc_tag.c").write_text(text)
    src = contracts.Source(tmp_path, layout.TreeLayout(layout.LAYOUTS[1], "6.12.200", ()))
    assert contracts._boot_write(src) == "ignored"
    assert contracts._unswitchable(src) == "handler"
    # Without the early return, a handler kernel is held to the fix all the
    # same: the probe never turns the bug into the expectation.
    (tmp_path / "lib" / "alloc_tag.c").write_text(text.replace("\tif (write && !current->mm)\n"
                                                               "\t\treturn 0;\n", ""))
    assert contracts._boot_write(src) == "ignored"


FACTS_612 = skips.Facts({"CONFIG_MEM_ALLOC_PROFILING": "y",
                         "CONFIG_MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT": "y",
                         "CONFIG_MEM_ALLOC_PROFILING_DEBUG": "n"}, WANT["6.12"], None, "x86_64")


@pytest.mark.parametrize("reason,true", [
    ("CONFIG_MEM_ALLOC_PROFILING is not set", False),
    ("needs CONFIG_MEM_ALLOC_PROFILING_DEBUG=y", True),
    ("not in this kernel: no include/uapi/linux/alloc_tag.h", True),
    ("not in this kernel: show_mem's header is \"Memory allocations:\"", True),
    ("not in this kernel: module tags are freed at unload, so a later free would use a "
     "freed tag", True),
    ("profiling switched off (vm.mem_profiling reads 0)", False),
    ("profiling disabled at boot (sysctl.vm.mem_profiling=never)", False),
    ("no /proc/allocinfo: profiling not supported in this boot: x", False),
    ("contract unknown: run through the runner", False),
    ("needs root", False),
    ("no huge page was allocated (memory too fragmented?)", False),
    ("no huge page was allocated (smaps: AnonHugePages 0 kB)", True),
    ("something new", False),
])
def test_skip_reasons_are_checked(reason, true):
    assert (skips.why_false(reason, FACTS_612) == "") is true, skips.why_false(reason, FACTS_612)


def test_skips_follow_the_boot_option_and_contracts():
    never = skips.Facts(FACTS_612.config, WANT["7.3"], "never,compressed", "arm64")
    assert skips.why_false("profiling disabled at boot (sysctl.vm.mem_profiling=never)",
                           never) == ""
    assert skips.why_false("no /proc/allocinfo: profiling disabled at boot "
                           "(sysctl.vm.mem_profiling=never)", never) == ""
    assert skips.why_false("not built as a 32-bit program: this suite builds one for x86_64 "
                           "only", never) == ""
    assert "IOCTL" in skips.why_false("not in this kernel: no include/uapi/linux/alloc_tag.h",
                                      never)
    off = skips.Facts(FACTS_612.config, WANT["7.3"], "0,compressed", "x86_64")
    assert skips.why_false("profiling off from boot (sysctl.vm.mem_profiling=0)", off) == ""
    assert skips.why_false("profiling off from boot (sysctl.vm.mem_profiling=0)",
                           FACTS_612) != ""


def test_a_false_skip_fails_the_item():
    leaf = Result("global.walk", Status.SKIP,
                      reason="not in this kernel: no include/uapi/linux/alloc_tag.h")
    run = RunResult(RunInfo(arch="x86_64", variant="default"),
                    [Result("ioctl_test", Status.SKIP, children=[leaf])])
    facts = skips.Facts(FACTS_612.config, WANT["7.3"], None, "x86_64")
    skips.check(run, facts, {"ioctl_test"})
    assert leaf.status == Status.FAIL and "false skip" in leaf.reason
    assert run.tests[0].status == Status.FAIL


def test_readme_contract_table_is_generated_from_the_records():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert contracts.table() in readme, "run: runner contracts --table, and paste it"


def test_module_counters_follow_the_arch_and_the_tree(real_tree):
    """Weak per-CPU module variables give every module tag one counter:
    s390 and alpha on 6.12 (asm/percpu.h), alpha only on 7.3 (Kconfig)."""
    version, src = real_tree
    shared = {"6.12": {"s390", "alpha"}, "7.3": {"alpha"}}[version]
    for srcarch in ("x86", "arm64", "riscv", "arm", "s390", "alpha", "powerpc"):
        got = contracts.read(src.tree, src.layout, srcarch)["MODULE_COUNTERS"]
        assert got == ("shared" if srcarch in shared else "per-tag"), srcarch
    assert "MODULE_COUNTERS" not in contracts.read(src.tree, src.layout)


def test_compressed_tag_lines_read_from_real_sources(real_tree):
    """The lines `runner fit` expects when tags do not fit, from 7.3's own
    alloc_tag.c; 6.12 never compresses tags, so it has none."""
    from runner import fit

    version, src = real_tree
    code = (src.tree / src.layout.layout.alloc_tag).read_text()
    if version == "6.12":
        assert contracts.read(src.tree, src.layout)["BOOT_GRAMMAR"] == "kstrtobool"
        with pytest.raises(fit.UserError):
            fit.formats(code)
        return
    boot, module = fit.formats(code)
    assert boot == ("%lu allocation tags cannot be references using %d available page flag "
                    "bits. Memory allocation profiling is disabled!")
    assert module.startswith("With module %s there are too many tags to fit in %d page flag")
