"""Shards of a run for CI matrices: `--shard K/N` picks a deterministic,
balanced subset of the kernel targets.

The boot variants of one kernel share its build, so every target of a
build lands in the same shard and each shard builds a kernel at most once.
Builds are spread by their expected cost (a clean build, then one boot per
target, from the arch's record; only the ratios matter, and they are the
same on every machine), largest first, each onto the least loaded shard (greedy longest
processing time); ties go by name and shard number, so every machine given
the same targets computes the same shards."""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import UserError
from runner.targets import Target


@dataclass(frozen=True)
class Shard:
    index: int  # K, from 1
    count: int  # N

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """"K/N" with 1 <= K <= N."""
    k, sep, n = text.strip().partition("/")
    try:
        shard = Shard(int(k), int(n)) if sep else None
    except ValueError:
        shard = None
    if shard is None or shard.count < 1:
        raise UserError(f"--shard '{text}' is not K/N: give the shard's number and the "
                        "number of shards, e.g. --shard 1/3")
    if not 1 <= shard.index <= shard.count:
        raise UserError(f"--shard {text}: K must be from 1 to {shard.count}, "
                        f"e.g. --shard 1/{shard.count}")
    return shard


@dataclass(frozen=True)
class Build:
    """One kernel build and the targets that boot it."""

    name: str
    targets: tuple[Target, ...]

    @property
    def seconds(self) -> float:
        arch = self.targets[0].arch  # its record's costs
        return arch.build_cost + arch.boot_cost * len(self.targets)


def builds(targets: list[Target]) -> list[Build]:
    """The targets grouped by the kernel they boot, in first-seen order."""
    by_name: dict[str, list[Target]] = {}
    for t in targets:
        by_name.setdefault(t.build_name, []).append(t)
    return [Build(name, tuple(ts)) for name, ts in by_name.items()]


def require(targets: list[Target]) -> list[Target]:
    """@targets, unless there are none: only variant off with boot
    variants other than none selects nothing."""
    if not targets:
        raise UserError("these options select no target: variant off (no profiling) boots "
                        "only without a boot option; add none to --boot-variant, or "
                        "another --variant")
    return targets


def plan(targets: list[Target], count: int) -> list[list[Build]]:
    """@targets in @count shards, each a list of builds."""
    require(targets)
    if count > len(builds(targets)):
        raise UserError(too_many(count, targets))
    shards: list[list[Build]] = [[] for _ in range(count)]
    load = [0.0] * count
    for b in sorted(builds(targets), key=lambda b: (-b.seconds, b.name)):
        i = min(range(count), key=lambda i: (load[i], i))
        shards[i].append(b)
        load[i] += b.seconds
    return shards


def too_many(count: int, targets: list[Target]) -> str:
    n = len(builds(targets))
    return (f"{count} shards for {n} kernel build{'s' if n != 1 else ''}: a shard never "
            f"splits a build, so give at most {n} shards (or more variants or arches)")


def select(targets: list[Target], spec: str | None) -> list[Target]:
    """The targets of shard @spec ("K/N"), in their original order; all of
    them without a spec (None: an empty one is an error)."""
    if spec is None:
        return require(targets)
    shard = parse(spec)
    mine = {t for b in plan(targets, shard.count)[shard.index - 1] for t in b.targets}
    return [t for t in targets if t in mine]
