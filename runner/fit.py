"""Will compressed tags fit?  `runner fit`, and a line in every run.

With sysctl.vm.mem_profiling=...,compressed a page's tag is not a pointer
in page_ext but an index kept in the page flag bits no other field uses.
At boot the kernel counts its own tags and turns profiling off, with one
line saying both numbers, when the indexes need more bits than there are;
a module that brings the count past them turns it off at load.  This
module makes the same decision from a build, before it boots:

- the kernel's tags: the length of its alloc_tags section (System.map's
  __start_alloc_tags and __stop_alloc_tags) over sizeof(struct alloc_tag);
- every module's tags: the size of its alloc_tags ELF section, likewise;
- the free page flag bits, the index type and the reserved indexes: a
  probe (kernel/fit-probe/) compiled against the build, which reads
  NR_UNUSED_PAGEFLAG_BITS, pgalloc_tag_idx and CODETAG_ID_FIRST from the
  build's own headers and config, the way asm-offsets does;
- the kernel's lines when they do not fit: their format strings, read
  from the tree.

The conditions are the kernel's, read from mm/alloc_tag.c (7.x): the boot
check refuses when CODETAG_ID_FIRST + kernel tags > 2^bits, the module
check (tags_addressable) when CODETAG_ID_FIRST + all tags >= 2^bits.
The console check "compressed_tags_fit_as_predicted" holds a boot with
,compressed to the prediction, numbers included.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner import overlay, proc
from runner.errors import UserError
from runner.paths import project_root

PROBE = "alloc_tag_fit_probe"
_PROBE_LINE = re.compile(r'"->ALLOCPROF_FIT_(\w+) [$#]?(-?\d+) ')
_BOOT_FORMAT = re.compile(r'pr_err\("(%lu allocation tags [^"]*?%d[^"]*?)\\n",\s*'
                          r'kernel_tags\.count,\s*NR_UNUSED_PAGEFLAG_BITS\)')
_MODULE_FORMAT = re.compile(r'pr_warn\("(With module %s [^"]*?%d[^"]*?)\\n",\s*'
                            r'mod->name,\s*NR_UNUSED_PAGEFLAG_BITS\)')
# The lines of the KUnit case that reports what the kernel itself found
# (alloc_tag_page_split's compressed_tags_fit_page_flags).
KUNIT_LINE = re.compile(r"# compressed_tags_fit_page_flags: (\d+) kernel tags, "
                        r"(-?\d+) page flag bits, tags in page flags: (yes|no)")
_ELF_MAX_SECTIONS = 1 << 16


@dataclass(frozen=True)
class Fit:
    kernel_tags: int
    tag_size: int
    free_bits: int
    index_bits: int  # the width of pgalloc_tag_idx, the type indexes pass through
    id_first: int  # the first index of a tag (the ones below are reserved)
    module_tags: dict[str, int] = field(default_factory=dict)  # .ko name -> tags
    boot_line: str = ""  # the kernel's line when its tags do not fit
    module_line: str = ""  # the line for a module whose tags do not (%s: its name)

    @property
    def indexes(self) -> int:
        """How many indexes the free bits hold (none past a negative count,
        which the kernel's own shift would leave undefined)."""
        return 1 << self.free_bits if self.free_bits >= 0 else 0

    @property
    def kernel_fits(self) -> bool:
        return self.id_first + self.kernel_tags <= self.indexes

    @property
    def modules_fit(self) -> bool:
        """Every module of the build loaded, profiling stays on."""
        return self.kernel_fits and \
            self.id_first + self.kernel_tags + sum(self.module_tags.values()) < self.indexes

    @property
    def index_wraps(self) -> bool:
        """More indexes than pgalloc_tag_idx holds, though the kernel's
        own check (which reads only the page flag bits) lets them in."""
        return self.kernel_fits and \
            self.id_first + self.kernel_tags + sum(self.module_tags.values()) > \
            1 << max(min(self.free_bits, self.index_bits), 0)

    def expected_boot_line(self) -> str:
        return self.boot_line.replace("%lu", str(self.kernel_tags), 1) \
            .replace("%d", str(self.free_bits), 1)

    def summary(self) -> str:
        needed = self.id_first + self.kernel_tags
        mods = sum(self.module_tags.values())
        head = (f"{self.kernel_tags} kernel tags (+{self.id_first} reserved indexes) in "
                f"{self.free_bits} free page flag bits")
        if not self.kernel_fits:
            return (f"{head}: do NOT fit ({needed} > 2^{self.free_bits}); ,compressed "
                    f"turns profiling off at boot")
        room = (1 << max(min(self.free_bits, self.index_bits), 0)) - needed - 1
        text = (f"{head}: fit; room for {max(room, 0)} module tags in "
                f"{min(self.free_bits, self.index_bits)}-bit indexes (the build's "
                f"{len(self.module_tags)} modules have {mods}"
                f"{'' if self.modules_fit else ': NOT all of them fit'})")
        if self.index_wraps:
            text += (f"; more indexes than the {self.index_bits}-bit pgalloc_tag_idx holds, "
                     f"which the kernel does not check")
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(kernel_fits=self.kernel_fits, modules_fit=self.modules_fit,
                 index_wraps=self.index_wraps)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Fit:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


def probe_dir() -> Path:
    return project_root() / "kernel" / "fit-probe"


def alloc_tags_size(path: Path) -> int | None:
    """The size of @path's alloc_tags ELF section (or .codetag.alloc_tags);
    None if it has none or is no ELF file this can read."""
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) \
                    or ident[5] not in (1, 2):
                return None
            wide, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
            head = f.read(48 if wide else 36)
            if wide:
                shoff, = struct.unpack_from(end + "Q", head, 24)
                shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 42)
            else:
                shoff, = struct.unpack_from(end + "I", head, 16)
                shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 30)
            if not 0 < shnum < _ELF_MAX_SECTIONS or shstrndx >= shnum or shentsize < 24:
                return None
            f.seek(shoff)
            table = f.read(shnum * shentsize)
            if len(table) < shnum * shentsize:
                return None
            layout = end + ("IIQQQQ" if wide else "IIIIII")

            def section(i: int) -> tuple[int, int, int]:
                name, _type, _flags, _addr, offset, size = \
                    struct.unpack_from(layout, table, i * shentsize)
                return name, offset, size

            _, str_off, str_size = section(shstrndx)
            f.seek(str_off)
            names = f.read(min(str_size, 1 << 24))
            for i in range(shnum):
                name, _, size = section(i)
                end_of = names.find(b"\0", name)
                # "alloc_tags" in objects; modules link it into
                # ".codetag.alloc_tags" (asm-generic/codetag.lds.h, 6.13+).
                if names[name:end_of if end_of >= 0 else None].split(b".")[-1] == b"alloc_tags":
                    return size
    except (OSError, struct.error):
        return None
    return None


def kernel_tags_bytes(build_dir: Path) -> int:
    """The length of the kernel's alloc_tags section, from System.map."""
    found = {}
    try:
        with open(build_dir / "System.map") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] in ("__start_alloc_tags", "__stop_alloc_tags"):
                    found[parts[2]] = int(parts[0], 16)
    except OSError as e:
        raise UserError(f"cannot read {build_dir / 'System.map'} ({e.strerror}): "
                        f"build the kernel again (runner build)") from None
    if len(found) != 2:
        raise UserError(f"{build_dir / 'System.map'} has no __start_alloc_tags/"
                        f"__stop_alloc_tags: the kernel was built without "
                        f"CONFIG_MEM_ALLOC_PROFILING")
    return found["__stop_alloc_tags"] - found["__start_alloc_tags"]


def read_probe(asm: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in _PROBE_LINE.finditer(asm)}


def formats(alloc_tag_c: str) -> tuple[str, str]:
    """The kernel's two lines when tags do not fit, as format strings."""
    boot, module = _BOOT_FORMAT.search(alloc_tag_c), _MODULE_FORMAT.search(alloc_tag_c)
    if not boot or not module:
        raise UserError("cannot read the lines the kernel prints when compressed tags do not "
                        "fit from its alloc_tag.c: the code is in no form runner/fit.py "
                        "knows; add its form there")
    return boot.group(1), module.group(1)


def compile_probe(tree: Path, build_dir: Path, env: dict[str, str], cc: str) -> dict[str, int]:
    """The probe's numbers for the build in @build_dir, compiled once per
    build (its stamp: the build's fingerprint and the probe's source)."""
    from runner.build import BUILT_STAMP, first_error

    out = build_dir / "fit-probe"
    out.mkdir(exist_ok=True)
    h = hashlib.sha256()
    stamp_of = build_dir / BUILT_STAMP
    h.update(stamp_of.read_bytes() if stamp_of.exists() else b"-")
    for f in sorted(probe_dir().iterdir()):
        if f.is_file():
            overlay.write_if_changed(out / f.name, f.read_text())
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    stamp, asm = out / ".allocprof-fit", out / f"{PROBE}.s"
    if stamp.exists() and asm.exists() and stamp.read_text() == h.hexdigest():
        return read_probe(asm.read_text(errors="replace"))
    stamp.unlink(missing_ok=True)
    log = build_dir / "fit-probe.log"
    log.write_text("")
    cmd = ["make", "-C", str(tree), f"O={build_dir}", f"M={out}", f"CC={cc}", f"{PROBE}.s"]
    if proc.run(cmd, env=env, log=log, check=False).returncode != 0 or not asm.exists():
        raise UserError(f"the compressed-tags probe did not compile against {build_dir}: "
                        f"{first_error(log)} (log: {log})")
    stamp.write_text(h.hexdigest())
    return read_probe(asm.read_text(errors="replace"))


def predict(build_dir: Path, numbers: dict[str, int], alloc_tag_c: str,
            modules: list[Path]) -> Fit | None:
    """The prediction for the build in @build_dir, from the probe's
    @numbers and @modules (.ko files); None for a kernel that never
    compresses tags (the probe found no CODETAG_ID_FIRST)."""
    if "ID_FIRST" not in numbers:
        return None
    missing = {"TAG_SIZE", "FREE_BITS", "INDEX_BITS"} - numbers.keys()
    if missing or numbers["TAG_SIZE"] <= 0:
        raise UserError(f"the compressed-tags probe read no {', '.join(sorted(missing))} from "
                        f"{build_dir}: see {build_dir / 'fit-probe'}")
    size = numbers["TAG_SIZE"]
    boot_line, module_line = formats(alloc_tag_c)
    mods = {}
    for ko in modules:
        n = alloc_tags_size(ko)
        if n:
            mods[ko.name] = n // size
    return Fit(kernel_tags=kernel_tags_bytes(build_dir) // size, tag_size=size,
               free_bits=numbers["FREE_BITS"], index_bits=numbers["INDEX_BITS"],
               id_first=numbers["ID_FIRST"], module_tags=dict(sorted(mods.items())),
               boot_line=boot_line, module_line=module_line)


def compressed_boot(option: str | None, grammar: str) -> bool:
    """Whether the boot option @option makes the kernel check the fit: a
    well-formed {0|1},compressed under the compressed grammar ("never"
    turns profiling off before anything is counted)."""
    if grammar != "compressed" or not option or option.startswith("never"):
        return False
    value, _, rest = option.partition(",")
    # kstrtobool reads one or two characters and ignores the rest.
    return rest == "compressed" and re.match(r"[yYtT1nNfF0]|[oO][nNfF]", value) is not None


# --- the console check: the kernel's decision under ,compressed ------------

CHECK = "compressed_tags_fit_as_predicted"
CHECK_WHY = ("booted with ,compressed, the kernel keeps tag indexes in page flags exactly "
             "when `runner fit` predicted they fit, and says so with the predicted numbers")
# What of a console the check reads (cheap substring tests first).
_NEEDLES = ("compressed_tags_fit_page_flags:", "allocation tags cannot be",
            "too many tags to fit")


@dataclass(frozen=True)
class Expectation:
    """What a boot must show: the prediction @fit, or why the check does
    not apply (@skip)."""

    fit: Fit | None = None
    skip: str = ""

    @property
    def kernel_refuses(self) -> bool:
        """The boot took ,compressed and the prediction says the kernel's
        tags do not fit: profiling is off for good from boot."""
        return self.fit is not None and not self.fit.kernel_fits


def expectation(prediction: dict | None, boot: str | None, grammar: str | None,
                feature: bool) -> Expectation:
    """For a boot with option @boot of a kernel whose BOOT_GRAMMAR contract
    is @grammar and whose build was predicted @prediction (RunInfo.fit)."""
    if not feature:
        return Expectation(skip="CONFIG_MEM_ALLOC_PROFILING is not set")
    if grammar != "compressed":
        return Expectation(skip="not in this kernel: page tags are never compressed into "
                                "page flags")
    if not compressed_boot(boot, grammar or ""):
        return Expectation(skip="tags are in page_ext: booted without "
                                "sysctl.vm.mem_profiling=...,compressed")
    return Expectation(fit=Fit.from_dict(prediction) if prediction else None)


def wanted(line: str) -> bool:
    return any(n in line for n in _NEEDLES)


def verdict(exp: Expectation, lines: list[str]):
    """The check's result for the console lines wanted() kept."""
    from runner.results import Status, TestResult

    if exp.skip:
        return TestResult(CHECK, Status.SKIP, reason=exp.skip)
    fit = exp.fit
    if fit is None:
        return TestResult(CHECK, Status.FAIL, reason="no prediction was made for this build "
                          "(runner/fit.py): nothing to hold the kernel to")
    wrong: list[str] = []
    said = [m for line in lines if (m := KUNIT_LINE.search(line))]
    if not said:
        wrong.append("the kernel's own numbers are missing: KUnit's alloc_tag_page_split."
                     "compressed_tags_fit_page_flags did not report")
    for m in said:
        got = (int(m.group(1)), int(m.group(2)), m.group(3))
        want = (fit.kernel_tags, fit.free_bits, "yes" if fit.kernel_fits else "no")
        if got != want:
            wrong.append(f"the kernel found {got[0]} tags, {got[1]} bits, tags in page flags: "
                         f"{got[2]}; predicted {want[0]}, {want[1]}, {want[2]}")
    boot_said = [line for line in lines if "allocation tags cannot be" in line]
    expected = fit.expected_boot_line()
    if fit.kernel_fits:
        wrong += [f"predicted to fit, yet: {line.strip()}" for line in boot_said]
    elif not any(line.rstrip().endswith(expected) for line in boot_said):
        wrong.append(f"predicted not to fit, and the kernel did not say {expected!r}")
    else:
        wrong += [f"not the predicted line: {line.strip()}" for line in boot_said
                  if not line.rstrip().endswith(expected)]
    if fit.modules_fit:
        wrong += [f"every module's tags were predicted to fit, yet: {line.strip()}"
                  for line in lines if "too many tags to fit" in line]
    if wrong:
        return TestResult(CHECK, Status.FAIL, reason=f"{len(wrong)} mismatch(es) with the "
                          f"prediction ({fit.summary()})", diagnostics=wrong)
    return TestResult(CHECK, Status.PASS)


# --- a build's prediction ----------------------------------------------------

def build_modules(build_dir: Path) -> list[Path]:
    """The modules of a build: the kernel's own (modules.order) and the
    helper modules built against it."""
    out = []
    try:
        order = (build_dir / "modules.order").read_text(errors="replace").split()
    except OSError:
        order = []
    for rel in order:
        ko = build_dir / (rel[:-2] + ".ko" if rel.endswith(".o") else rel)
        if ko.is_file():
            out.append(ko)
    helpers = build_dir / "test-module"
    out += sorted(helpers.glob("*.ko")) if helpers.is_dir() else []
    return out


def for_build(cache, src, target, built, grammar: str | None) -> Fit | None:
    """The prediction for @built (of @target, from @src), or None where
    there is nothing to fit: a kernel whose BOOT_GRAMMAR contract (@grammar)
    has no ,compressed, or one built without the feature."""
    from runner import build

    if grammar != "compressed" or \
            built.config().get("CONFIG_MEM_ALLOC_PROFILING") != "y":
        return None
    numbers = compile_probe(src.tree, built.build_dir, build.make_env(target, cache),
                            build.cached_compiler(target))
    return predict(built.build_dir, numbers, src.tree.joinpath(
        src.layout.layout.alloc_tag).read_text(errors="replace"), build_modules(built.build_dir))
