"""runner/proc.py: every host command, told through the printer and failing
in one shape."""

import io
import sys

import pytest

from runner import proc
from runner.errors import InfraError, UserError
from runner.printer import Printer

PY = sys.executable


@pytest.fixture
def told(monkeypatch) -> io.StringIO:
    """What the printer says, at its debug level."""
    out = io.StringIO()
    monkeypatch.setattr(proc, "PRINTER", Printer(out, verbose=True))
    return out


def test_output_is_captured_and_the_command_told_with_its_time(told, tmp_path):
    p = proc.run([PY, "-c", "import os, sys; print(os.getcwd()); print('e', file=sys.stderr)"],
                 cwd=tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"{tmp_path}\n", "e\n")
    start, end = told.getvalue().splitlines()
    assert start.startswith(f"runner: $ {PY} -c ") and start.endswith(f"(in {tmp_path})")
    assert end.startswith(f"runner: {PY} -c ") and " exit 0 after " in end


def test_debug_lines_only_when_verbose(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(proc, "PRINTER", Printer(out, verbose=False))
    proc.run([PY, "-c", "pass"])
    assert out.getvalue() == ""
    monkeypatch.setenv("ALLOCPROF_VERBOSE", "1")
    assert Printer(out).verbose and not Printer(out, verbose=False).verbose
    monkeypatch.setenv("ALLOCPROF_VERBOSE", "0")
    assert not Printer(out).verbose


def test_a_failure_is_one_line_with_its_last_words_and_the_fix():
    script = "import sys; print('noise'); sys.stderr.write('one\\n\\ntwo\\nthree\\n'); sys.exit(3)"
    with pytest.raises(UserError) as e:
        proc.run([PY, "-c", script], what="the step", fix="do this")
    assert str(e.value) == "the step failed: two | three; do this"
    assert type(e.value) is UserError
    # Unchecked, the caller reads the exit code; an infrastructure error keeps the shape.
    assert proc.run([PY, "-c", script], check=False).returncode == 3
    err = proc.failure("the boot", "no banner", "delete the build", kind=InfraError)
    assert isinstance(err, InfraError) and str(err) == \
        "the boot failed: no banner; delete the build"


def test_a_silent_failure_says_its_exit_code_and_names_the_command():
    with pytest.raises(UserError, match=r"^\S+ -c import sys; sys.exit\(4\) failed: exit 4$"):
        proc.run([PY, "-c", "import sys; sys.exit(4)"])


def test_a_missing_program_names_what_to_install(tmp_path):
    with pytest.raises(UserError, match=r"^no-such-tool not found: install it "
                                        r"\(apt-get install no-such-tool\)$"):
        proc.run(["no-such-tool", "x"])
    with pytest.raises(UserError, match="^no-such-tool not found: use a Debian host$"):
        proc.run(["no-such-tool"], missing="use a Debian host")
    # A directory that is not there is the OSError it is, not a missing program.
    with pytest.raises(FileNotFoundError):
        proc.run([PY, "-c", "pass"], cwd=tmp_path / "gone")


def test_output_to_a_log_after_the_command_and_its_failure_quotes_the_log(tmp_path):
    log = tmp_path / "step.log"
    log.write_text("before\n")
    p = proc.run([PY, "-c", "import sys; print(sys.stdin.read().count('y'))"], input="yyy",
                 log=log)
    assert p.returncode == 0 and p.stdout is None
    assert log.read_text() == f"before\n$ {PY} -c import sys; print(sys.stdin.read()" \
                              ".count('y'))\n3\n"
    with pytest.raises(UserError, match=f"^make failed: last words; see {log}$"):
        proc.run([PY, "-c", "import sys; sys.exit('last words')"], log=log, what="make",
                 fix=f"see {log}")


def test_progress_is_told_while_it_runs_and_a_timeout_stops_it(tmp_path):
    ticks = []
    p = proc.run([PY, "-c", "import time; time.sleep(0.35)"], log=tmp_path / "l",
                 progress=lambda: ticks.append(1), every=0.1)
    assert p.returncode == 0 and len(ticks) >= 2  # (more on a busy machine)
    with pytest.raises(UserError, match=r"^sleeping took over \S+: check the network$"):
        proc.run([PY, "-c", "import time; time.sleep(30)"], timeout=0.2, what="sleeping",
                 fix="check the network")
    with pytest.raises(UserError, match="took over"):
        proc.run([PY, "-c", "import time; time.sleep(30)"], timeout=0.3, log=tmp_path / "l",
                 progress=lambda: None, every=0.1)


def test_bytes_when_asked():
    assert proc.run([PY, "-c", "print('x')"], text=False).stdout == b"x\n"


def test_a_long_build_still_tells_its_progress(tmp_path, monkeypatch):
    import os

    from runner import build

    out = io.StringIO()
    monkeypatch.setattr(build, "PRINTER", Printer(out))
    monkeypatch.setattr(build, "PROGRESS_EVERY", 0.1)
    log = tmp_path / "build.log"
    script = "import time; print('  CC      mm/a.o', flush=True); time.sleep(0.5)"
    assert build._make_with_progress([PY, "-c", script], tmp_path, dict(os.environ), log,
                                     "building x86_64-default", 7) == 0
    lines = out.getvalue().splitlines()
    assert lines and lines[-1].startswith("runner: building x86_64-default: 1/7 files built")
    assert log.read_text().startswith(f"$ {PY} -c ")


def test_apt_failure_keeps_apts_own_error_and_names_the_mirror(tmp_path, monkeypatch):
    import subprocess

    from runner import apt

    said = "Reading package lists...\nE: Unable to locate package linux-source-9.9\nW: x\n"
    monkeypatch.setattr(apt, "host_arch", lambda: "amd64")
    monkeypatch.setattr(proc, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 100, "", said))
    private = apt.PrivateApt(tmp_path, ("deb http://m/debian bookworm main",))
    with pytest.raises(UserError) as e:
        private.run("download", "linux-source-9.9")
    assert str(e.value) == (
        "apt-get download linux-source-9.9 failed: E: Unable to locate package "
        f"linux-source-9.9; set {apt.MIRROR_ENV} for another mirror (sources: "
        "deb http://m/debian bookworm main)")
