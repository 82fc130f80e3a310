"""Where the runner keeps its caches: outside the clone, so a fresh clone
reuses extracted sources, build trees and ccache from earlier runs."""

import os
import tempfile
import time
from pathlib import Path

CACHE_ENV = "ALLOCPROF_CACHE"


def cache_root(override: str | None = None) -> Path:
    """--cache-dir wins, then $ALLOCPROF_CACHE, then $XDG_CACHE_HOME."""
    if override:
        root = Path(override)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(xdg) / "allocprof-ktest"
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def ccache_dir(cache: Path) -> Path:
    return cache / "ccache"


def new_run_dir(parent: str | Path, prefix: str = "") -> Path:
    """A new directory for one run's results, named by its start time and
    made atomically: two runs started in the same second never share one."""
    parent = Path(parent).expanduser().resolve()
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{stamp}-", dir=parent))
