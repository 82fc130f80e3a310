"""Kconfig fragments per arch and variant, merged with the kernel's own
merge_config.sh on top of allnoconfig, then checked option by option."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner import proc
from runner.errors import UserError
from runner.paths import project_root
from runner.targets import Target

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def configs_dir() -> Path:
    return project_root() / "kernel" / "configs"


@dataclass(frozen=True)
class Fragment:
    name: str
    text: str


def fragments(target: Target) -> list[Fragment]:
    """The fragments of a target, later ones overriding earlier ones: the
    arch's own comes from its record (kernel/arches/)."""
    d = configs_dir()
    names = ["base-common.config"]
    if not target.arch.kunit_only:
        names.append("base-vng.config")
    names += [None, "tests.config"]
    if target.variant != "off":
        names.append("profiling.config")
    names.append(f"variant-{target.variant}.config")
    if target.bench:
        names.append("bench.config")
    out = []
    for n in names:
        if n is None:
            out.append(Fragment(f"base-{target.arch.name}.config", target.arch.config))
            continue
        try:
            out.append(Fragment(n, (d / n).read_text()))
        except OSError:
            raise UserError(f"missing config fragment {d / n}") from None
    return out


def read_options(text: str) -> dict[str, str]:
    """CONFIG_X -> value ('n' for '# CONFIG_X is not set')."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _SET.match(line)
        if m:
            opts[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            opts[m.group(1)] = "n"
    return opts


def wanted(frags: list[Fragment]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in frags:
        out.update(read_options(f.text))
    return out


_DECL = re.compile(r"^\s*(?:menu)?config\s+(\w+)", re.M)


def declared(tree: Path) -> set[str]:
    """Every CONFIG_ symbol some Kconfig file of @tree declares."""
    out: set[str] = set()
    for f in tree.rglob("Kconfig*"):
        if f.is_file() and f.relative_to(tree).parts[0] != "tools":
            out.update(f"CONFIG_{m}" for m in _DECL.findall(f.read_text(errors="replace")))
    return out


def not_stuck(want: dict[str, str], dotconfig: Path,
              absent: set[str] = frozenset()) -> list[str]:
    """Options whose final value differs from what a fragment asked for
    (@absent: options this kernel does not have, which cannot stick)."""
    have = read_options(dotconfig.read_text())
    bad = []
    for opt, val in want.items():
        if opt in absent:
            continue
        got = have.get(opt, "n")
        if got != val:
            bad.append(f"{opt}={val} (got {got if opt in have else 'unset'})")
    return bad


def configure(target: Target, tree: Path, build_dir: Path, make_env: dict[str, str],
              log: Path) -> bool:
    """Writes build_dir/.config; returns False when it was already current."""
    frags = fragments(target)
    dotconfig = build_dir / ".config"
    stamp = build_dir / ".allocprof-fragments"
    signature = "\n".join(f"{f.name}:{f.text}" for f in frags)
    if dotconfig.exists() and stamp.exists() and stamp.read_text() == signature:
        return False
    written = build_dir / "fragments"
    written.mkdir(parents=True, exist_ok=True)
    for f in frags:
        (written / f.name).write_text(f.text)
    cmd = [str(tree / "scripts/kconfig/merge_config.sh"), "-n", "-O", str(build_dir)]
    cmd += [str(written / f.name) for f in frags]
    what = f"kernel configuration for {target.build_name}"
    proc.run(cmd, cwd=tree, env=make_env, log=log, what=what, fix=f"see {log}")
    if not dotconfig.exists():
        raise proc.failure(what, f"no {dotconfig} was written", f"see {log}")
    check(target, tree, build_dir, log)
    stamp.write_text(signature)
    return True


def check(target: Target, tree: Path, build_dir: Path, log: Path) -> None:
    """Every option the fragments ask for, that this kernel has, is set as
    asked in build_dir/.config; else a UserError, and the next build
    configures afresh."""
    want = wanted(fragments(target))
    known = declared(tree)
    # An option a kernel has retired (PROC_SYSCTL in 7.x) is noted in the
    # log; every option the kernel has must stick.
    absent = {o for o in want if o not in known}
    # What the arch cannot have (its record's [config] without, with why).
    impossible = set(target.arch.config_without) & set(want) - absent
    with open(log, "a") as out:
        if absent:
            out.write(f"allocprof: not in this kernel, ignored: {' '.join(sorted(absent))}\n")
        if impossible:
            out.write(f"allocprof: not on {target.arch.name} ({target.arch.record}), "
                      f"ignored: {' '.join(sorted(impossible))}\n")
    bad = not_stuck(want, build_dir / ".config", absent | impossible)
    if bad:
        (build_dir / ".allocprof-fragments").unlink(missing_ok=True)
        raise UserError(
            f"config options for {target.build_name} did not stick (check their "
            f"dependencies in kernel/configs/): {', '.join(bad)}"
        )
