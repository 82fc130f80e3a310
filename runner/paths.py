"""Where the runner keeps its caches: outside the clone, so a fresh clone
reuses extracted sources, build trees and ccache from earlier runs."""

import os
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
