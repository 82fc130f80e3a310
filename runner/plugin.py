"""The pytest plugin: every kernel test case as its own pytest item, per
arch and variant (conftest.py only names this module).

Items are collected from the sources of every kind of test (runner/kinds.py)
without building anything.  The first item of a target to run builds and boots that kernel
once for the whole run; other items, in this or another xdist worker, wait
on the same lock and read the saved results."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from runner import layout, options, pipeline, prune, report, shard, source, tools
from runner.cache import Cache
from runner.cases import Suite
from runner.errors import UserError
from runner.kinds import KINDS, Kind, declared, tree_suites
from runner.paths import CACHE_ENV, cache_path, check_dir, new_run_dir, project_root
from runner.printer import PRINTER
from runner.results import RunResult, Status, TestResult
from runner.selection import Selection
from runner.targets import Target, targets

ROOT = project_root()
RUN_DIR_KEY = "allocprof_run_dir"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("allocprof", "allocprof-ktest kernel targets")
    options.add_to_pytest(g.addoption, options.PYTEST)


def _kernel_scope(builds: dict[str, str], nodeid: str) -> str:
    """The kernel build an item boots, read from its id
    ("...::case[x86_64-default-boot0]", maybe with xdist's "@group"
    suffix); any other item is a scope of its own."""
    head, _, tail = nodeid.rpartition("[")
    return builds.get(tail.partition("]")[0], nodeid) if head else nodeid


class _XdistHooks:
    """The controller's side of pytest-xdist (-n, or -d --tx ssh=...).

    It hands its run directory to every worker: the path to a local one, the
    name to a remote one, which keeps it under its own --results-dir (each
    machine has its own cache). It schedules each kernel build's items, all
    its boot variants, on one worker, from the items' ids: xdist's own
    loadgroup reads the xdist_group mark from ids that pytest >= 9.2 no
    longer lets it rewrite (pytest-xdist issue 1386)."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def pytest_configure_node(self, node) -> None:
        local = node.gateway.spec.popen
        node.workerinput[RUN_DIR_KEY] = self.run_dir if local else Path(self.run_dir).name

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadScopeScheduling

        builds = {t.name: t.build_name for t in _targets(config)}

        class ByKernel(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return _kernel_scope(builds, nodeid)

        return ByKernel(config, log)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        run_dir = Path(config.getoption("results_dir")) / workerinput[RUN_DIR_KEY]
    else:
        # Bad paths and sources: one usage error before anything is made.
        try:
            check_dir(cache_path(config.getoption("cache_dir")), "the cache",
                      f"point {CACHE_ENV} (or --cache-dir) at a writable directory")
            options.check_source(config.getoption("kernel_src"),
                                 config.getoption("kernel_rev"))
            run_dir = str(new_run_dir(config.getoption("results_dir"), "pytest-"))
        except UserError as e:
            raise pytest.UsageError(str(e)) from None
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistHooks(run_dir), "allocprof-xdist")
            # One worker per kernel: targets build in parallel, and a
            # target's items never wait on each other across workers.
            if getattr(config.option, "dist", "no") == "load":
                config.option.dist = "loadgroup"
        # Bad target options: one usage error here, not one per worker.
        _targets(config)
    config.stash[_RUN_DIR] = Path(run_dir)


_RUN_DIR = pytest.StashKey[Path]()
_TARGETS = pytest.StashKey[list[Target]]()
_SHARD = pytest.StashKey[list[Target]]()
_SKIPPED_ARCHES = pytest.StashKey[dict[str, str]]()
_CONTEXT = pytest.StashKey[pipeline.RunContext]()


def _targets(config: pytest.Config) -> list[Target]:
    """Every requested target; those of a default arch this machine
    cannot build or boot are in _SKIPPED_ARCHES with the reason."""
    if _TARGETS not in config.stash:
        try:
            wanted = targets(config.getoption("arch"), config.getoption("variant"),
                             config.getoption("boot_variant"))
            # Every machine shards the same list: before what this one can run.
            mine = shard.select(wanted, config.getoption("shard"))
            _, skipped = tools.split_available(wanted, explicit=bool(config.getoption("arch")))
        except UserError as e:
            raise pytest.UsageError(str(e)) from None
        config.stash[_TARGETS] = wanted
        config.stash[_SHARD] = mine
        config.stash[_SKIPPED_ARCHES] = skipped
    return config.stash[_TARGETS]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--shard K/N: the items of other shards' targets are deselected."""
    if _SOURCE_ERROR in config.stash:
        raise pytest.UsageError(config.stash[_SOURCE_ERROR])
    if config.getoption("shard") is None:
        return
    _targets(config)
    mine = set(config.stash[_SHARD])
    keep, other = [], []
    for item in items:
        (other if isinstance(item, CaseItem) and item.target not in mine else keep).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Only what was asked: the guests run the suites and cases of the
    items left after -k, node ids and --shard (every worker sees the same)."""
    config = session.config
    skipped = config.stash.get(_SKIPPED_ARCHES, {})
    picked = [(i.parent.name, i.case) for i in session.items
              if isinstance(i, CaseItem) and i.target.arch.name not in skipped]
    if not picked or config.option.collectonly:
        return  # nothing will boot
    try:
        opts = _options(config)
        src = opts.source()
    except UserError as e:
        if _is_worker(config):
            return  # each item reports it: a worker has no one line to give
        raise pytest.UsageError(str(e)) from None
    upstream = tree_suites(src.tree, src.layout.upstream_selftests)
    every = [(s.name, c) for s in declared(upstream) for c in s.cases]
    # The context with what was asked for (its prepared source kept).
    config.stash[_CONTEXT] = dataclasses.replace(opts, only=Selection.of(picked, every))


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    kind = next((k for k in KINDS if k.declares(file_path, parent.config.rootpath)), None)
    if kind is None:
        return None
    return KindFile.from_parent(parent, path=file_path, kind=kind)


class KindFile(pytest.File):
    """A project file that declares cases of one kind of test."""

    def __init__(self, *, kind: Kind, **kw) -> None:
        super().__init__(**kw)
        self.kind = kind

    def collect(self):
        suites = self._tree_suites() if self.kind.from_tree else self.kind.suites_in(self.path)
        for suite in suites:
            yield SuiteNode.from_parent(self, name=suite.name, cases=suite.cases)

    def _tree_suites(self) -> list[Suite]:
        """A kind whose cases the kernel under test declares (upstream's
        alloc_tag selftests, 7.x): one item per case, read from the
        prepared tree."""
        _targets(self.config)
        if not any(t for t in self.config.stash[_SHARD]
                   if t.arch.name not in self.config.stash[_SKIPPED_ARCHES]):
            return []
        if self.config.option.collectonly:
            return self._without_preparing()
        try:
            src = _options(self.config).source()
        except UserError as e:
            if _is_worker(self.config):
                raise pytest.UsageError(str(e)) from None
            # Told in one line once collection is over, not as a
            # collection error with a traceback.
            self.config.stash[_SOURCE_ERROR] = str(e)
            return []
        return tree_suites(src.tree, src.layout.upstream_selftests)

    def _without_preparing(self) -> list[Suite]:
        """--collect-only: the suites read from the source as it is, nothing
        extracted, cloned or fetched (a Debian package not fetched yet has
        none to show)."""
        src, rev = self.config.getoption("kernel_src"), self.config.getoption("kernel_rev")
        try:
            if src and not src.startswith(source.PACKAGE_PREFIX):
                tree = Path(src).expanduser().resolve()
                if not (tree / ".git").exists():
                    return _upstream_in(tree)  # a plain tree is only read
                with tempfile.TemporaryDirectory() as tmp:
                    _git_selftests(tree, rev or "HEAD", Path(tmp))
                    return _upstream_in(Path(tmp))
            tarball = _tarball(self.config, src)
            if not tarball.exists():
                self.warn(pytest.PytestWarning(
                    f"{tarball} is not there yet, so the kernel's own selftests are not "
                    "listed: a run without --collect-only fetches it"))
                return []
            return _tarball_suites(self.config, tarball)
        except (OSError, subprocess.CalledProcessError, UserError) as e:
            raise pytest.UsageError(f"--kernel-src {src or source.DEBIAN_TARBALL}: {e}") from None


_SOURCE_ERROR = pytest.StashKey[str]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _upstream_in(tree: Path) -> list[Suite]:
    return tree_suites(tree, layout.upstream_programs(tree))


def _git_selftests(repo: Path, rev: str, dest: Path) -> None:
    """Upstream's selftest directory of @repo at @rev, copied into @dest."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-tree", "-d", "--name-only", rev,
                             layout.UPSTREAM_SELFTESTS], capture_output=True, text=True)
    if listed.returncode != 0:
        raise UserError(f"unknown revision '{rev}' in {repo}")
    if not listed.stdout.strip():
        return  # this kernel ships none
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev,
                              layout.UPSTREAM_SELFTESTS], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def _tarball(config: pytest.Config, src: str | None) -> Path:
    """The tarball of the default source, or where a Debian package's is
    kept once fetched (runner/source.py, fetch_package)."""
    if not src:
        return source.DEBIAN_TARBALL
    return source.package_tarball(Cache.find(config.getoption("cache_dir")),
                                  src[len(source.PACKAGE_PREFIX):])


def _tarball_suites(config: pytest.Config, tarball: Path) -> list[Suite]:
    """Upstream's selftests in @tarball, read by streaming it through tar
    (nothing else is written), and remembered per tarball in the cache."""
    st = tarball.stat()
    memo = Cache.find(config.getoption("cache_dir")).upstream_selftests
    key = f"{tarball}:{st.st_size}:{st.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        with tempfile.TemporaryDirectory() as tmp:
            # tar fails when nothing matched: this kernel ships none.
            subprocess.run(["tar", "-xf", str(tarball), "-C", tmp, "--wildcards",
                            "--strip-components=1", f"*/{layout.UPSTREAM_SELFTESTS}/*"],
                           capture_output=True, check=False)
            known[key] = [[s.name, list(s.cases)] for s in _upstream_in(Path(tmp))]
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(json.dumps(known))
        except OSError:
            pass  # read again next time
    return [Suite(tarball, name, tuple(cases)) for name, cases in known[key]]


class SuiteNode(pytest.Collector):
    """A suite (a KUnit suite, a selftest program, the console checks):
    one item per case and target."""

    def __init__(self, *, cases: tuple[str, ...], **kw) -> None:
        super().__init__(**kw)
        self.cases = cases

    def collect(self):
        for target in _targets(self.config):
            for case in self.cases:
                item = CaseItem.from_parent(self, name=f"{case}[{target.name}]",
                                             case=case, target=target)
                item.add_marker(pytest.mark.kernel)
                why = self.config.stash[_SKIPPED_ARCHES].get(target.arch.name)
                if why:
                    item.add_marker(pytest.mark.skip(reason=why))
                # One worker per kernel build: no two builds of it at once.
                item.add_marker(pytest.mark.xdist_group(target.build_name))
                yield item


class KernelTestFailed(Exception):
    """A kernel test did not pass; the message is the whole report."""


def _options(config: pytest.Config) -> pipeline.RunContext:
    """The run context of this process: its source is prepared once."""
    if _CONTEXT not in config.stash:
        config.stash[_CONTEXT] = pipeline.RunContext(
            cache=Cache.open(config.getoption("cache_dir")),
            results_dir=config.stash[_RUN_DIR],
            kernel_src=config.getoption("kernel_src"),
            kernel_rev=config.getoption("kernel_rev"),
            jobs=config.getoption("jobs"),
            boot_timeout=config.getoption("boot_timeout"),
            append=config.getoption("append"),
        )
    return config.stash[_CONTEXT]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """After a run that had kernel items: the cache's size, with the
    command that prunes it, once it is over prune.WARN_SIZE."""
    if _is_worker(config) or config.option.collectonly:
        return
    reports = (r for rs in terminalreporter.stats.values() for r in rs
               if isinstance(r, pytest.TestReport))  # not the deselected items
    if not any("kernel" in r.keywords for r in reports):
        return
    note = prune.size_note(Cache.find(config.getoption("cache_dir")))
    if note:
        PRINTER.info(note)


def _combined(result: TestResult) -> tuple[Status, list[str]]:
    """Status of a case with parameters: the worst of its own and theirs."""
    bad = [c for c in result.children if not c.status.is_ok]
    if result.status.is_ok and not bad:
        return result.status, []
    lines = list(result.diagnostics)
    for c in bad:
        lines += [f"[{c.name}] {c.status.value} {c.reason}".rstrip()] + c.diagnostics
    status = result.status if not result.status.is_ok else bad[0].status
    return status, lines


class CaseItem(pytest.Item):
    """One case on one target: passes, skips, xfails or fails as the
    kernel's run of it did."""

    def __init__(self, *, case: str, target: Target, **kw) -> None:
        super().__init__(**kw)
        self.case = case
        self.target = target

    def setup(self) -> None:
        """The kernel's run, shared by its items.  A run that could not be
        had (or trusted) is an error of the item's setup, never a verdict."""
        try:
            self.run = pipeline.get(_options(self.config), self.target)
        except UserError as e:
            raise KernelTestFailed(f"infrastructure error: {e}") from None

    def runtest(self) -> None:
        run = self.run
        self.user_properties += [
            ("arch", run.info.arch), ("variant", run.info.variant),
            ("kernel_version", run.info.kernel_version),
            ("source_id", run.info.source_id), ("console", run.info.console),
        ]
        result = run.find(self.parent.name, self.case)
        if result is None:
            raise KernelTestFailed(self._never_reported(run))
        status, diag = _combined(result)
        if status == Status.PASS:
            trouble = pipeline.guest_trouble(run)
            if trouble and _options(self.config).only is not None:
                # The console's own items, which would fail, were not selected.
                raise KernelTestFailed(f"{self.parent.name}.{self.case} passed, but the kernel "
                                       f"was not healthy to the end ({trouble})")
            return
        if status == Status.SKIP:
            # A case with parameters says why through them.
            why = result.reason or next((c.reason for c in result.children if c.reason), "")
            pytest.skip(why or "skipped by the kernel test, which gave no reason")
        if status in (Status.XFAIL, Status.TODO):
            pytest.xfail(result.reason or status.value)
        result = TestResult(name=result.name, status=status, reason=result.reason,
                            diagnostics=diag)
        raise KernelTestFailed(report.failure_message(run, result))

    def _never_reported(self, run: RunResult) -> str:
        return "\n".join(
            [f"{self.parent.name}.{self.case} never reported a result "
             f"({run.info.note or 'not in the console'})",
             f"console tail ({run.info.console}):"] + run.console_tail)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, KernelTestFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.parent.name}::{self.name}"
