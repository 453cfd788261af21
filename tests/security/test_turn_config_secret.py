"""``roomcast turn-config`` (issue 12, low): the written config holds the TURN secret, so it is 0600 (also over an
existing, wider file), and the secret comes from ``ROOMCAST_TURN_SECRET`` instead of a flag visible in ``ps``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def turn_config(args: list[str], secret: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROOMCAST_TURN_SECRET"}
    if secret is not None:
        env["ROOMCAST_TURN_SECRET"] = secret
    command = [sys.executable, "-m", "roomcast", "turn-config", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=lambda: os.umask(0o022))


def test_config_is_written_owner_only_with_the_secret_from_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "turnserver.conf"
    done = turn_config(["--output", str(out)], secret="e" * 40)
    assert done.returncode == 0, done.stderr
    assert "static-auth-secret=" + "e" * 40 in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "warning" not in done.stderr


def test_an_existing_world_readable_file_is_narrowed(tmp_path: Path) -> None:
    out = tmp_path / "turnserver.conf"
    out.write_text("old")
    out.chmod(0o644)
    assert turn_config(["--output", str(out)], secret="f" * 40).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "f" * 40 in out.read_text()


def test_no_secret_is_a_clear_error_and_the_flag_warns(tmp_path: Path) -> None:
    missing = turn_config([], secret=None)
    assert missing.returncode == 2 and "ROOMCAST_TURN_SECRET" in missing.stderr
    flagged = turn_config(["--secret", "g" * 40, "--output", str(tmp_path / "c.conf")], secret=None)
    assert flagged.returncode == 0 and "warning" in flagged.stderr and "ps" in flagged.stderr
