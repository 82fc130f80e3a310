"""Kernel sources by Debian package name: the private apt state, the
mirrors read from the host's apt sources, and the offline cache."""

import pytest

from runner import apt, source
from runner.cache import Cache
from runner.errors import UserError


def test_mirrors_come_from_the_hosts_sources_both_formats(tmp_path, monkeypatch):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    (d / "off.sources").write_text("Enabled: no\nTypes: deb\nURIs: http://nope/debian\n"
                                   "Suites: sid\n")
    monkeypatch.setattr(apt, "HOST_SOURCES", (tmp_path / "sources.list", d))
    monkeypatch.setattr(apt, "KEYRING", tmp_path / "no-keyring.gpg")
    monkeypatch.delenv(apt.MIRROR_ENV, raising=False)
    monkeypatch.delenv(apt.SECURITY_ENV, raising=False)
    assert apt.mirrors() == ("http://mirror.example/debian",
                             "http://mirror.example/debian-security")
    assert apt.suite_line("deb", "trixie-backports") == \
        "deb http://mirror.example/debian trixie-backports main"
    assert apt.suite_line("deb", "bookworm-security").startswith(
        "deb http://mirror.example/debian-security ")
    keyring = tmp_path / "debian-archive-keyring.gpg"
    keyring.write_bytes(b"k")
    monkeypatch.setattr(apt, "KEYRING", keyring)
    assert apt.suite_line("deb", "trixie-backports") == \
        f"deb [signed-by={keyring}] http://mirror.example/debian trixie-backports main"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian "
                                           "bookworm main\n")
    assert apt.mirrors()[0] == "http://old.example/debian"


def test_no_mirror_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(apt, "HOST_SOURCES", (tmp_path / "none",))
    monkeypatch.delenv(apt.MIRROR_ENV, raising=False)
    with pytest.raises(UserError, match=apt.MIRROR_ENV):
        apt.mirrors()


def test_a_fetched_package_needs_no_network_again(tmp_path, monkeypatch):
    cached = tmp_path / "debian" / "linux-source-7.3" / "linux-source-7.3.tar.xz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"xz")

    def no_network(*args, **kw):
        raise AssertionError("apt-get ran although the package is cached")

    monkeypatch.setattr(apt.PrivateApt, "run", no_network)
    assert source.fetch_package(Cache(tmp_path), "linux-source-7.3") == cached
