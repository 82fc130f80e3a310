"""runner/fit.py: will compressed tags fit (issue 23, arch contracts)."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import fit, skips
from runner.results import Status

BOOT_FMT = ("%lu allocation tags cannot be references using %d available page flag bits. "
            "Memory allocation profiling is disabled!")
MOD_FMT = ("With module %s there are too many tags to fit in %d page flag bits. "
           "Memory allocation profiling is disabled!")
ALLOC_TAG_C = (
    '\tif (CODETAG_ID_FIRST + kernel_tags.count > (1UL << NR_UNUSED_PAGEFLAG_BITS)) {\n'
    f'\t\tpr_err("{BOOT_FMT}\\n",\n\t\t\tkernel_tags.count, NR_UNUSED_PAGEFLAG_BITS);\n'
    f'\t\t\tpr_warn("{MOD_FMT}\\n",\n\t\t\t\tmod->name, NR_UNUSED_PAGEFLAG_BITS);\n')


def elf(sections: dict[str, int], wide: bool = True, big: bool = False) -> bytes:
    """A minimal relocatable ELF file with @sections (name -> size)."""
    end = ">" if big else "<"
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    offsets, at = {}, 1
    for n in [*sections, ".shstrtab"]:
        offsets[n] = at
        at += len(n) + 1
    ehsize, shentsize = (64, 64) if wide else (52, 40)
    shoff = ehsize + len(names)
    shnum = len(sections) + 2
    ident = b"\x7fELF" + bytes([2 if wide else 1, 2 if big else 1, 1]) + b"\0" * 9
    if wide:
        head = struct.pack(end + "HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, ehsize, 0, 0,
                           shentsize, shnum, shnum - 1)
        sh = end + "IIQQQQIIQQ"
    else:
        head = struct.pack(end + "HHIIIIIHHHHHH", 1, 3, 1, 0, 0, shoff, 0, ehsize, 0, 0,
                           shentsize, shnum, shnum - 1)
        sh = end + "IIIIIIIIII"
    table = struct.pack(sh, *([0] * 10))
    for n, size in sections.items():
        table += struct.pack(sh, offsets[n], 1, 3, 0, 0, size, 0, 0, 8, 0)
    table += struct.pack(sh, offsets[".shstrtab"], 3, 0, 0, ehsize, len(names), 0, 0, 1, 0)
    return ident + head + names + table


@pytest.mark.parametrize("wide,big", [(True, False), (False, False), (True, True),
                                      (False, True)])
@pytest.mark.parametrize("name", ["alloc_tags", ".codetag.alloc_tags"])
def test_module_tags_read_from_any_elf_class_and_byte_order(tmp_path, wide, big, name):
    ko = tmp_path / "m.ko"
    ko.write_bytes(elf({".text": 16, name: 120, ".rela" + name: 72}, wide, big))
    assert fit.alloc_tags_size(ko) == 120
    ko.write_bytes(elf({".text": 16, "not_alloc_tags": 8, "alloc_tags_x": 8}, wide, big))
    assert fit.alloc_tags_size(ko) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_never_crash_the_elf_reader(tmp_path_factory, blob):
    ko = tmp_path_factory.mktemp("elf") / "x.ko"
    ko.write_bytes(b"\x7fELF" + blob)
    assert fit.alloc_tags_size(ko) is None or fit.alloc_tags_size(ko) >= 0


@pytest.mark.parametrize("asm", [
    '.ascii "->ALLOCPROF_FIT_FREE_BITS $41 NR_UNUSED_PAGEFLAG_BITS"',  # x86
    '.ascii "->ALLOCPROF_FIT_FREE_BITS #41 NR_UNUSED_PAGEFLAG_BITS"',  # arm
    '.ascii "->ALLOCPROF_FIT_FREE_BITS 41 NR_UNUSED_PAGEFLAG_BITS"',  # riscv, s390
])
def test_probe_lines_of_every_assembler(asm):
    assert fit.read_probe(asm) == {"FREE_BITS": 41}


def make(tags: int, bits: int, modules: dict | None = None) -> fit.Fit:
    return fit.Fit(kernel_tags=tags, tag_size=40, free_bits=bits, index_bits=16, id_first=2,
                   module_tags=modules or {}, boot_line=BOOT_FMT, module_line=MOD_FMT)


def test_the_kernels_conditions_at_their_edges():
    # Boot: CODETAG_ID_FIRST + tags > 2^bits refuses; so equal still fits.
    assert make(1022, 10).kernel_fits and not make(1023, 10).kernel_fits
    # Modules (tags_addressable): all indexes < 2^bits, one stricter.
    assert make(1000, 10, {"a.ko": 21}).modules_fit
    assert not make(1000, 10, {"a.ko": 22}).modules_fit
    assert make(1023, 10).expected_boot_line() == BOOT_FMT.replace("%lu", "1023").replace(
        "%d", "10")
    # Past 16-bit indexes the kernel's check says nothing: told apart.
    assert make(60000, 41, {"a.ko": 6000}).index_wraps and not make(1140, 41).index_wraps
    assert "do NOT fit" in make(1023, 10).summary()
    # No free bits, or fewer than none: nothing fits, and nothing breaks.
    for bits in (0, -3):
        assert not make(1, bits).kernel_fits and "do NOT fit" in make(1, bits).summary()
    assert fit.Fit.from_dict(make(5, 7, {"m.ko": 3}).to_dict()) == make(5, 7, {"m.ko": 3})


def test_predict_from_a_build_directory(tmp_path):
    (tmp_path / "System.map").write_text(
        "ffffffff816a6720 D __start_alloc_tags\nffffffff816b1940 D __stop_alloc_tags\n")
    ko = tmp_path / "m.ko"
    ko.write_bytes(elf({".codetag.alloc_tags": 0x78}))
    numbers = fit.read_probe('"->ALLOCPROF_FIT_TAG_SIZE $40 x" "->ALLOCPROF_FIT_ID_FIRST $2 y" '
                             '"->ALLOCPROF_FIT_FREE_BITS $41 z" '
                             '"->ALLOCPROF_FIT_INDEX_BITS $16 w"')
    got = fit.predict(tmp_path, numbers, ALLOC_TAG_C, [ko])
    assert (got.kernel_tags, got.free_bits, got.module_tags) == (1140, 41, {"m.ko": 3})
    # A kernel that never compresses tags: nothing to predict.
    assert fit.predict(tmp_path, {"TAG_SIZE": 40}, ALLOC_TAG_C, []) is None


def test_unknown_code_is_a_one_line_error(tmp_path):
    with pytest.raises(fit.UserError, match="add its form"):
        fit.formats("pr_err(\"something else\\n\");")
    with pytest.raises(fit.UserError, match="without CONFIG_MEM_ALLOC_PROFILING"):
        (tmp_path / "System.map").write_text("0 T _stext\n")
        fit.kernel_tags_bytes(tmp_path)


@pytest.mark.parametrize("option,took", [
    ("1,compressed", True), ("0,compressed", True), ("y,compressed", True),
    ("on,compressed", True), ("off,compressed", True), ("never,compressed", False),
    ("1,bogus", False), ("1", False), (None, False), ("x,compressed", False),
    ("o,compressed", False), ("1,compressed,x", False)])
def test_which_boot_options_make_the_kernel_check(option, took):
    assert fit.compressed_boot(option, "compressed") is took
    assert fit.compressed_boot(option, "kstrtobool") is False  # 6.12 reads "1"


def kunit(tags, bits, used):
    return (f"[    0.89]     # compressed_tags_fit_page_flags: {tags} kernel tags, {bits} page "
            f"flag bits, tags in page flags: {used}")


def check(prediction, lines, option="1,compressed"):
    exp = fit.expectation(prediction.to_dict() if prediction else None, option, "compressed",
                          True)
    return fit.verdict(exp, [line for line in lines if fit.wanted(line)])


def test_a_boot_that_does_as_predicted_passes():
    assert check(make(1140, 41), [kunit(1140, 41, "yes")]).status == Status.PASS
    line = "[    0.0] " + make(1100, 10).expected_boot_line()
    assert check(make(1100, 10), [line, kunit(1100, 10, "no")]).status == Status.PASS


@pytest.mark.parametrize("lines,why", [
    ([], "did not report"),
    ([kunit(1141, 41, "yes")], "found 1141 tags"),
    ([kunit(1140, 40, "yes")], "40 bits"),
    ([kunit(1140, 41, "no")], "tags in page flags: no"),
    ([kunit(1140, 41, "yes"), "[ 0.1] " + make(1140, 41).expected_boot_line()],
     "predicted to fit, yet"),
    ([kunit(1140, 41, "yes"), "[ 5.0] " + MOD_FMT.replace("%s", "m").replace("%d", "41")],
     "every module's tags"),
])
def test_a_boot_that_contradicts_the_prediction_fails(lines, why):
    got = check(make(1140, 41), lines)
    assert got.status == Status.FAIL and any(why in d for d in got.diagnostics), got


def test_a_refusal_must_be_said_with_the_predicted_numbers():
    no = make(1100, 10)
    other = "[ 0.0] " + BOOT_FMT.replace("%lu", "1100").replace("%d", "11")
    got = check(no, [other, kunit(1100, 10, "no")])
    assert got.status == Status.FAIL and "did not say" in got.diagnostics[0]
    assert check(no, [kunit(1100, 10, "no")]).status == Status.FAIL


def test_no_prediction_is_a_failure_and_every_skip_is_true():
    assert check(None, [kunit(1, 1, "yes")]).status == Status.FAIL
    for option, grammar, feature in (("never,compressed", "compressed", True),
                                     ("1,compressed", "kstrtobool", True),
                                     ("1,compressed", "compressed", False)):
        got = fit.verdict(fit.expectation(make(1, 41).to_dict(), option, grammar, feature), [])
        assert got.status == Status.SKIP
        facts = skips.Facts({"CONFIG_MEM_ALLOC_PROFILING": "y" if feature else "n"},
                            {"BOOT_GRAMMAR": grammar, "COMPRESSED_SYSCTL":
                             "yes" if grammar == "compressed" else "no"}, option, "x86_64")
        assert skips.why_false(got.reason, facts) == "", got.reason


def test_the_page_ext_skip_is_false_when_the_kernel_took_compressed():
    facts = skips.Facts({}, {"BOOT_GRAMMAR": "compressed"}, "1,compressed", "x86_64")
    reason = "tags are in page_ext: booted without sysctl.vm.mem_profiling=...,compressed"
    assert skips.why_false(reason, facts)
    for option in ("never,compressed", "1,bogus", "1"):
        assert skips.why_false(reason, skips.Facts({}, {"BOOT_GRAMMAR": "compressed"}, option,
                                                   "x86_64")) == ""


def test_gave_up_on_compression_is_true_only_where_the_prediction_refuses():
    """i386 7.3.4 under 1c: 1117 tags in 10 bits, the kernel turns profiling
    off at boot, and every suite skips as not supported in this boot."""
    reason = "profiling not supported in this boot: the kernel gave up on compression"
    config = {"CONFIG_MEM_ALLOC_PROFILING": "y"}
    grammar = {"BOOT_GRAMMAR": "compressed"}
    refused = skips.Facts(config, grammar, "1,compressed", "i386", compression_refused=True)
    assert skips.why_false(reason, refused) == ""
    assert skips.why_false("no allocation tags registered: " + reason, refused) == ""
    fits = skips.Facts(config, grammar, "1,compressed", "x86_64")
    assert "predicts no refusal" in skips.why_false(reason, fits)
    # Profiling unsupported for another reason (never, default-off) is no
    # refusal of ,compressed either.
    off = {"CONFIG_MEM_ALLOC_PROFILING": "y"}
    assert skips.why_false(reason, skips.Facts(off, grammar, "never", "x86_64"))
    assert skips.why_false(reason, skips.Facts(off, grammar, None, "x86_64"))
    # What a program switching profiling off would say stays a false skip,
    # and so does "off from boot" for a value that switches it on.
    assert skips.why_false("profiling switched off (vm.mem_profiling reads 0)", refused)
    assert skips.why_false("profiling off from boot (sysctl.vm.mem_profiling=1,compressed)",
                           refused) == "'1,compressed' switches profiling on"
    assert skips.why_false("profiling off from boot (sysctl.vm.mem_profiling=0,compressed)",
                           skips.Facts(config, grammar, "0,compressed", "x86_64")) == ""
