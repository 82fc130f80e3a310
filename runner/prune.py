"""What the cache holds (`runner cache`), and pruning it (`runner cache
prune`): least recently used entries first, never one a run holds.

An entry (runner/cache.py) is deleted by renaming it aside while its
use lock is held exclusively, then removing the renamed directory: a run
either holds the entry, and it is kept, or waits for the rename and then
makes the entry anew; it never sees half of one.  The compiler cache is
trimmed by ccache itself, which other builds may be using meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.cache import Cache
from runner.errors import UserError
from runner.lock import exclusive_now
from runner.paths import cache_path, keep_runs, run_dirs

# The end of a run names the prune command past this size (README, "Cache").
WARN_SIZE = 20 << 30
# The size told at the end of a run is measured again after this long.
SIZE_MEMO_SECONDS = 3600.0
# What an entry is renamed to while it is deleted.
TRASH = ".pruned-"

_UNITS = "KMGT"
_FACTOR = {u: 1 << (10 * i) for i, u in enumerate(["", *_UNITS])}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?", re.I)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])", re.I)


def parse_size(text: str, option: str = "--max-size") -> int:
    """Bytes of "500M", "2G", "1.5T", "2GiB" or "100" (powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise UserError(f"{option} {text[:30]!r} is not a size: give a number with K, M, G "
                        f"or T (powers of 1024), e.g. {option} 20G")
    return int(float(m.group(1)) * _FACTOR[m.group(2).upper()])


def parse_duration(text: str, option: str = "--older-than") -> float:
    """Seconds of "30m", "12h", "7d" or "2w"."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise UserError(f"{option} {text[:30]!r} is not a duration: give a number with s, m, "
                        f"h, d or w (seconds to weeks), e.g. {option} 7d")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


def format_size(size: int) -> str:
    """"0B", "512B", "1.5K", "20G": the units parse_size() reads."""
    value, unit = float(size), "B"
    for u in _UNITS:
        if value < 1024:
            break
        value, unit = value / 1024, u
    if unit == "B":
        return f"{size}B"
    return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"


def format_age(seconds: float) -> str:
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= width:
            return f"{int(seconds // width)}{unit} ago"
    return "just now"


def measure(path: Path, skip: frozenset[str] = frozenset()) -> tuple[int, float]:
    """Bytes on disk below @path (du's count, links not followed; nothing
    in the directories of @skip) and the newest modification time there."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0, 0.0
    size, newest = st.st_blocks * 512, st.st_mtime
    todo = [str(path)]
    while todo:
        try:
            with os.scandir(todo.pop()) as it:
                for e in it:
                    if e.path in skip:
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue  # deleted meanwhile
                    size += st.st_blocks * 512
                    newest = max(newest, st.st_mtime)
                    if e.is_dir(follow_symlinks=False):
                        todo.append(e.path)
        except OSError:
            continue
    return size, newest


@dataclass
class Entry:
    kind: str
    path: Path
    size: int
    last_use: float  # the newest of: a run keeping it, a file in it changing
    # Trees that read their git objects from this entry (a bisect clone of
    # a patch series): deleted with it, since they are useless without it.
    borrowers: list[Entry] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.size + sum(b.size for b in self.borrowers)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _lender(cache: Cache, tree: Path) -> Path | None:
    """The entry of the cache whose git objects @tree borrows (clone
    --shared), if any."""
    try:
        lines = (tree / ".git" / "objects" / "info" / "alternates").read_text().split()
    except OSError:
        return None
    for line in lines:
        with contextlib.suppress(ValueError):
            return cache.entry_of(Path(os.path.normpath(line)))
    return None


def entries(cache: Cache) -> list[Entry]:
    """Every entry of @cache, least recently used first."""
    found = []
    for kind, path in cache.entries():
        size, newest = measure(path)
        if path.name.startswith(TRASH):
            kind = "trash"
        else:
            newest = max(newest, _mtime(cache.use_lock(path)))
        found.append(Entry(kind, path, size, newest))
    by_path = {e.path: e for e in found}
    for e in found:
        lender = by_path.get(_lender(cache, e.path)) if e.kind == "tree" else None
        if lender is not None:
            lender.borrowers.append(e)
            lender.last_use = max(lender.last_use, e.last_use)
    return sorted(found, key=lambda e: (e.last_use, str(e.path)))


def other_size(cache: Cache, found: list[Entry]) -> int:
    """Bytes of the cache in no entry: locks, memo files, folders."""
    return measure(cache.root, frozenset(str(e.path) for e in found))[0]


def held(cache: Cache, entry: Entry) -> bool:
    """Whether a run holds @entry (or a tree borrowing from it) now; asks
    without making a lock file (a run makes it before it holds it)."""
    for e in [entry, *entry.borrowers]:
        use = cache.use_lock(e.path)
        if use.exists():
            with exclusive_now(use) as free:
                if not free:
                    return True
    return False


def _inside(cache: Cache, path: Path) -> bool:
    root = os.path.realpath(cache.root)
    parent = os.path.realpath(path.parent)
    return (parent == root or parent.startswith(root + os.sep)) and not path.is_symlink()


def _delete(cache: Cache, path: Path) -> None:
    """Removes @path, which must be in the cache; never follows a link."""
    if not _inside(cache, path):
        raise UserError(f"{path} is not in the cache {cache.root}: not deleted")
    shutil.rmtree(path, ignore_errors=True)


def _remove(cache: Cache, entry: Entry) -> bool:
    """Deletes @entry and its borrowers, unless a run holds one of them:
    False then, and nothing is deleted."""
    group = [entry, *entry.borrowers]
    aside = []
    with contextlib.ExitStack() as locks:
        for e in group:
            if not locks.enter_context(exclusive_now(cache.use_lock(e.path))):
                return False
        for e in group:
            if e.path.is_dir() and _inside(cache, e.path):
                to = e.path.with_name(f"{TRASH}{e.path.name}-{os.getpid()}-{time.time_ns()}")
                e.path.rename(to)
                aside.append(to)
    for path in aside:  # the runs that waited make the entries again meanwhile
        _delete(cache, path)
    return True


def _ccache(cache: Cache, *args: str, size: int | None = None) -> str:
    """Runs ccache on the cache's compiler cache; "" if it did, else why not."""
    env = dict(os.environ, CCACHE_DIR=str(cache.ccache))
    if size is not None:  # (a bare number would be gigabytes)
        env["CCACHE_MAXSIZE"] = f"{size >> 10}Ki"
    try:
        p = subprocess.run(["ccache", *args], env=env, capture_output=True, text=True,
                           check=False)
    except OSError as e:
        return f"ccache cannot run ({e.strerror})"
    return "" if p.returncode == 0 else f"ccache {args[0]} failed: " + \
        ((p.stderr or p.stdout).strip().splitlines() or ["?"])[-1]


@dataclass
class Pruned:
    before: int
    after: int = 0
    removed: list[Entry] = field(default_factory=list)  # entries deleted
    trimmed: list[tuple[Entry, int, int]] = field(default_factory=list)  # ccache: from, to
    kept: list[tuple[Entry, str]] = field(default_factory=list)  # and why not


class _Pruning:
    def __init__(self, cache: Cache, dry_run: bool) -> None:
        self.cache, self.dry_run = cache, dry_run
        self.entries = entries(cache)
        self.total = other_size(cache, self.entries) + sum(e.size for e in self.entries)
        self.result = Pruned(before=self.total)
        self.gone: set[Path] = set()

    def remove(self, e: Entry) -> None:
        if e.path in self.gone:
            return
        removed = not held(self.cache, e) if self.dry_run else _remove(self.cache, e)
        if not removed:
            held_by = [b.path.name for b in e.borrowers if held(self.cache, b)]
            why = (f"{', '.join(held_by)} borrows its git objects and is in use" if held_by
                   else "in use by a run that is still going")
            self.result.kept.append((e, why))
            return
        group = [e, *(b for b in e.borrowers if b.path not in self.gone)]
        self.gone.update(g.path for g in group)
        self.total -= sum(g.size for g in group)
        self.result.removed += group

    def trim_ccache(self, e: Entry, *args: str, size: int | None = None) -> None:
        """ccache evicts its own least recently used files (safe while
        builds use it); without ccache nothing uses the directory."""
        if e.path in self.gone:
            return
        if not shutil.which("ccache"):
            if not self.dry_run:
                _delete(self.cache, e.path)
            self.gone.add(e.path)
            self.total -= e.size
            self.result.removed.append(e)
            return
        if self.dry_run:  # what ccache would leave, as far as can be told
            left = {"--clear": 0, "--cleanup": min(e.size, size or 0)}.get(args[0], e.size)
        else:
            why = _ccache(self.cache, *args, size=size)
            if why:
                self.result.kept.append((e, why))
                return
            left, _ = measure(e.path)
        self.total -= e.size - left
        self.result.trimmed.append((e, e.size, left))
        e.size = left

    def older_than(self, seconds: float, now: float) -> None:
        for e in self.entries:
            if e.kind == "trash" or e.last_use >= now - seconds:
                continue
            if e.kind == "ccache":
                self.trim_ccache(e, "--evict-older-than", f"{int(seconds)}s")
            else:
                self.remove(e)

    def down_to(self, most: int) -> None:
        for e in self.entries:
            if self.total <= most:
                return
            if e.path in self.gone or e.kind == "trash":
                continue
            if e.kind == "ccache":
                room = most - (self.total - e.size)
                if room < 1 << 20:
                    self.trim_ccache(e, "--clear")
                else:
                    self.trim_ccache(e, "--cleanup", size=room)
            else:
                self.remove(e)


def prune(cache: Cache, older_than: float | None = None, max_size: int | None = None,
          dry_run: bool = False) -> Pruned:
    """Deletes the entries last used more than @older_than seconds ago,
    then, least recently used first, entries until the cache is at most
    @max_size bytes; never one a run holds.  Leftovers of an interrupted
    prune go first."""
    p = _Pruning(cache, dry_run)
    for e in p.entries:
        if e.kind == "trash":
            if not dry_run:
                _delete(cache, e.path)
            p.total -= e.size
            p.gone.add(e.path)
            p.result.removed.append(e)
    if older_than is not None:
        p.older_than(older_than, time.time())
    if max_size is not None:
        p.down_to(max_size)
    p.result.after = p.total
    if not dry_run:
        _remember_size(cache, p.total)
    return p.result


def _remember_size(cache: Cache, size: int) -> None:
    memo = cache.size_memo
    tmp = memo.with_name(f"{memo.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"bytes": size, "when": time.time()}))
        tmp.replace(memo)


def cache_size(cache: Cache) -> int:
    """The cache's size, measured at most once per SIZE_MEMO_SECONDS."""
    try:
        memo = json.loads(cache.size_memo.read_text())
        if 0 <= time.time() - memo["when"] < SIZE_MEMO_SECONDS:
            return int(memo["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    size, _ = measure(cache.root)
    _remember_size(cache, size)
    return size


def prune_command(cache: Cache, max_size: int) -> str:
    where = "" if cache.root == cache_path() else f" --cache-dir {shlex.quote(str(cache.root))}"
    return f"runner cache prune --max-size {format_size(max_size)}{where}"


def size_note(cache: Cache, threshold: int = WARN_SIZE) -> str:
    """One line naming the prune command when the cache is over
    @threshold, else ""."""
    size = cache_size(cache)
    if size <= threshold:
        return ""
    return (f"the cache {cache.root} holds {format_size(size)} (over "
            f"{format_size(threshold)}); `{prune_command(cache, threshold // 2)}` deletes the "
            "least recently used builds and trees, never one a run is using")


def listing(cache: Cache, results: Path | None = None) -> list[str]:
    """`runner cache`: each entry with its size and last use, least
    recently used (pruned first) at the top, then the results and the total."""
    now = time.time()
    found = entries(cache)
    rows = [(e.kind, format_size(e.size), format_age(now - e.last_use),
             str(e.path.relative_to(cache.root)) + (" (in use)" if held(cache, e) else ""))
            for e in found]
    other = other_size(cache, found)
    rows.append(("other", format_size(other), "-", "locks and memo files (never pruned)"))
    total = other + sum(e.size for e in found)
    if results is not None:
        results = results.expanduser().resolve()
        runs = run_dirs(results)
        measured = [measure(d) for d in runs]
        size = sum(m[0] for m in measured)
        newest = max((m[1] for m in measured), default=0.0)
        total += size
        rows.append(("results", format_size(size), format_age(now - newest) if runs else "-",
                     f"{results}: {len(runs)} run directories (the newest {keep_runs()} of "
                     "each command are kept)"))
    lines = [f"cache {cache.root}"]
    lines += [f"{k:<8} {s:>6}  {a:>9}  {p}" for k, s, a, p in
              [("kind", "size", "last use", "path"), *rows]]
    lines.append(f"{'total':<8} {format_size(total):>6}")
    return lines


def report(result: Pruned, dry_run: bool = False) -> list[str]:
    """What a prune deleted and kept, one line each, and the sizes."""
    delete, trim = ("would delete", "would trim") if dry_run else ("deleted", "trimmed")
    lines = [f"{delete} {e.kind} {e.path} ({format_size(e.size)})" for e in result.removed]
    lines += [f"{trim} {e.kind} {e.path} to {format_size(left)} (was {format_size(was)})"
              for e, was, left in result.trimmed]
    lines += [f"kept {e.kind} {e.path} ({format_size(e.size)}): {why}"
              for e, why in result.kept]
    freed = result.before - result.after
    lines.append(f"the cache {'would be' if dry_run else 'is'} {format_size(result.after)} "
                 f"(was {format_size(result.before)}, {format_size(freed)} freed)")
    return lines


def asked(cache: Cache, older_than: str | None, max_size: str | None,
          dry_run: bool = False) -> list[str]:
    """`runner cache prune`: its options read, the cache checked, then
    pruned; the lines to print."""
    older = parse_duration(older_than) if older_than is not None else None
    most = parse_size(max_size) if max_size is not None else None
    if older is None and most is None:
        raise UserError("say what to prune: --older-than DURATION (e.g. 14d), --max-size SIZE "
                        "(e.g. 20G), or both")
    if not cache.locks.is_dir():
        if not any(cache.entries()):
            return [f"nothing to prune: {cache.root} holds no tree, build or guest root"]
        raise UserError(f"{cache.root} is no allocprof-ktest cache (it has no "
                        f"{cache.locks.name}/): nothing was deleted; give --cache-dir the cache")
    return report(prune(cache, older, most, dry_run=dry_run), dry_run)
