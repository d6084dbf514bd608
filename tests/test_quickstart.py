"""quickstart.sh: unknown modes fail before any work; re-runs rebuild only when a build input changed."""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _tree(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A copy of quickstart.sh beside stand-in sources, a .venv whose python logs its calls, and apt stubs."""
    shutil.copy(ROOT / "quickstart.sh", tmp_path / "quickstart.sh")
    for name in ("setup.py", "pyproject.toml"):
        (tmp_path / name).write_text("# stand-in\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "_ext.pyx").write_text("# stand-in\n")
    log = tmp_path / "calls.log"
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    py = venv / "python"
    # pip install leaves the extension behind, as the real editable build does.
    py.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                  f'case "$*" in *"install -q -e"*) touch {tmp_path}/pkg/_ext.cpython-311-x86_64-linux-gnu.so;; esac\n')
    py.chmod(0o755)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for tool, body in (("dpkg-query", 'echo "install ok installed"'), ("apt-get", "exit 99"), ("sudo", "exit 99")):
        (stubs / tool).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}")
    return tmp_path / "quickstart.sh", log, env


def _run(qs: Path, log: Path, env: dict, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    log.unlink(missing_ok=True)
    r = subprocess.run(["bash", str(qs), *args], capture_output=True, text=True, env=env, timeout=60)
    return r, log.read_text().splitlines() if log.exists() else []


def test_unknown_mode_is_rejected_before_anything_is_installed(tmp_path):
    qs, log, env = _tree(tmp_path)
    r, calls = _run(qs, log, env, "foo")
    assert r.returncode == 2 and "unknown mode 'foo'" in r.stderr and "usage" in r.stderr
    assert calls == [] and "[quickstart]" not in r.stdout + r.stderr


def test_rerun_rebuilds_only_when_a_build_input_changed(tmp_path):
    qs, log, env = _tree(tmp_path)
    installs = lambda calls: [c for c in calls if c.startswith("-m pip install -q -e")]  # noqa: E731
    r, calls = _run(qs, log, env, "test", "-x")
    assert r.returncode == 0, r.stderr
    assert installs(calls) == ["-m pip install -q -e .[test,eval]"]
    assert calls[-1] == "-m pytest -q -m slow or not slow -x"  # CI runs the slow tests too
    r, calls = _run(qs, log, env, "test")
    assert installs(calls) == [] and "up to date" in r.stdout
    past = time.time() - 60  # the last build was a minute ago; the .pyx was edited since
    os.utime(tmp_path / ".venv" / ".quickstart-built", (past, past))
    r, calls = _run(qs, log, env, "test")
    assert installs(calls) and "sources changed" in r.stdout
    r, calls = _run(qs, log, env, "test")
    assert installs(calls) == []
    (tmp_path / "pkg" / "_ext.cpython-311-x86_64-linux-gnu.so").unlink()
    r, calls = _run(qs, log, env, "test")
    assert installs(calls) and "missing" in r.stdout
