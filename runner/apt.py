"""apt with a private state in the cache.

The runner fetches Debian packages (a kernel's linux-source, the sources
of a foreign guest's shell) with apt-get, but with its own sources list,
package lists and archive directory under the cache: the host's apt
configuration is read (its mirrors and keyrings) and never written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from runner import proc
from runner.errors import UserError
from runner.lock import exclusive

# Where the host's apt sources are (read only).
HOST_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
MIRROR_ENV = "ALLOCPROF_DEBIAN_MIRROR"  # "URI" of Debian's main archive
SECURITY_ENV = "ALLOCPROF_DEBIAN_SECURITY"  # "URI" of its security archive


def _host_uris() -> list[tuple[str, str]]:
    """(URI, suite) pairs of the host's deb lines, one-line and deb822."""
    out: list[tuple[str, str]] = []
    files: list[Path] = []
    for p in HOST_SOURCES:
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(p.glob("*.list")) + sorted(p.glob("*.sources"))
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if fields.get("Enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("URIs", "").split():
                    out += [(uri, s) for s in fields.get("Suites", "").split()]
        else:
            for m in re.finditer(r"^deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
                out.append((m.group(1), m.group(2)))
    return out


def mirrors() -> tuple[str, str]:
    """Debian's main and security archive URIs, as the host's apt has
    them (overridable by environment)."""
    main = os.environ.get(MIRROR_ENV, "")
    security = os.environ.get(SECURITY_ENV, "")
    for uri, suite in _host_uris():
        if not security and suite.endswith("-security"):
            security = uri
        elif not main and re.fullmatch(r"[a-z]+", suite) and "debian" in uri:
            main = uri
    if not main:
        raise UserError("no Debian mirror in the host's apt sources: set "
                        f"{MIRROR_ENV}=URI (e.g. the URI of your Debian mirror)")
    return main.rstrip("/"), (security or main.replace("/debian", "/debian-security")).rstrip("/")


KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def suite_line(kind: str, suite: str) -> str:
    """An apt line for @suite on the archive that carries it, checked
    against Debian's keyring where the host has it as a file."""
    main, security = mirrors()
    uri = security if suite.endswith("-security") else main
    signed = f"[signed-by={KEYRING}] " if KEYRING.is_file() else ""
    return f"{kind} {signed}{uri} {suite} main"


_NOT_DEBIAN = "fetching Debian packages needs a Debian host (or give --kernel-src a local tree)"


def host_arch() -> str:
    p = proc.run(["dpkg", "--print-architecture"], check=False, missing=_NOT_DEBIAN)
    return p.stdout.strip() or "amd64"


@dataclass(frozen=True)
class PrivateApt:
    state: Path  # lists, archives and the sources list live here
    lines: tuple[str, ...]  # "deb URI suite component" or "deb-src ..."

    def run(self, *args: str, cwd: Path | None = None) -> str:
        lists = self.state / "lists"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        (self.state / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        sources = self.state / "sources.list"
        text = "".join(f"{line}\n" for line in self.lines)
        if not sources.exists() or sources.read_text() != text:
            sources.write_text(text)
        arch = host_arch()
        with exclusive(self.state / "apt.lock"):  # one apt-get on this state at a time
            return self._run(arch, sources, lists, args, cwd)

    def _run(self, arch: str, sources: Path, lists: Path, args: tuple[str, ...],
             cwd: Path | None) -> str:
        cmd = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={sources}",
               "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={lists}",
               "-o", f"Dir::Cache={self.state}",
               "-o", f"Dir::Cache::Archives={self.state}/archives",
               "-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}",
               "-o", "APT::Sandbox::User=root", *args]
        what = f"apt-get {' '.join(args)}"
        p = proc.run(cmd, cwd=cwd, check=False, timeout=1800, what=what,
                     fix="check the network or the mirror", missing=_NOT_DEBIAN)
        if p.returncode != 0:
            errors = [ln for ln in (p.stderr or p.stdout).splitlines() if ln.startswith("E:")]
            raise proc.failure(what, errors[0].strip() if errors else proc.last_lines(
                p.stderr or p.stdout, 1) or f"exit {p.returncode}",
                f"set {MIRROR_ENV} for another mirror (sources: {'; '.join(self.lines)})")
        return p.stdout
