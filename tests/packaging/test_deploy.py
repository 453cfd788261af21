"""deploy/: the systemd unit, the Containerfile and the compose file agree with the code they deploy.

What can be checked without building an image here: ``systemd-analyze verify`` accepts the unit; every
``ROOMCAST_*`` variable they set is a real setting (a typo would be ignored silently at run time); the
ports they publish are the server's defaults, media UDP and TCP included; the commands they run parse with
the real CLI; the example environment passes the server's own start-up checks; TURN's relay ports in the
compose file match the ``turn-config`` command it documents."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from roomcast.app.cli import _refuse_public_dev_mode, build_parser
from roomcast.app.config import Config, load
from roomcast.turn.coturn_config import turn_config_main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {"ROOMCAST_" + f.name.upper() for f in fields(Config)} - {"ROOMCAST_DEV_MODE"}
DEFAULTS = Config()


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_every_variable_is_a_setting() -> None:
    example = env_file(DEPLOY / "roomcast.env.example")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    container_env = re.findall(r"(ROOMCAST_[A-Z_]+)=", (DEPLOY / "Containerfile").read_text())
    commented = re.findall(r"^# (ROOMCAST_[A-Z_]+)=", (DEPLOY / "roomcast.env.example").read_text(), re.M)
    used = {*example, *compose["services"]["roomcast"]["environment"], *container_env, *commented}
    assert used - SETTINGS == set()
    assert "ROOMCAST_MEDIA_TCP_PORT" in used and "ROOMCAST_PUBLIC_IP" in used


def test_the_example_environment_passes_the_start_up_checks() -> None:
    config = load(env=env_file(DEPLOY / "roomcast.env.example"))
    assert not config.dev_mode and config.host == "0.0.0.0"
    _refuse_public_dev_mode(config, allowed=False)  # raises on dev credentials off loopback
    assert (config.port, config.media_port, config.media_tcp_port) == (7880, 7882, 7881)
    with pytest.raises(ValueError, match="dev mode"):  # the same file without keys is refused
        bare = {k: v for k, v in env_file(DEPLOY / "roomcast.env.example").items() if "API" not in k}
        _refuse_public_dev_mode(load(env=bare), allowed=False)


def test_published_ports_are_the_servers() -> None:
    wanted = {f"{DEFAULTS.port}/tcp", f"{DEFAULTS.media_tcp_port}/tcp", f"{DEFAULTS.media_port}/udp"}
    exposed = set(re.search(r"^EXPOSE (.+)$", (DEPLOY / "Containerfile").read_text(), re.M).group(1).split())  # type: ignore[union-attr]
    assert exposed == wanted
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    published = {p.split(":", 1)[1] for p in compose["services"]["roomcast"]["ports"]}
    assert published == wanted
    turn = compose["services"]["coturn"]["ports"]
    assert "3478:3478/udp" in turn and "3478:3478/tcp" in turn
    relay = next(p for p in turn if "-" in p).split(":")[0]
    low, high = relay.split("-")
    assert f"--min-port {low} --max-port {high}" in (DEPLOY / "compose.yaml").read_text()


def test_the_commands_parse_with_the_real_cli(capsys: pytest.CaptureFixture[str]) -> None:
    unit = (DEPLOY / "roomcast.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.+)$", unit, re.M)
    assert exec_start is not None and exec_start.group(1).endswith("/roomcast")
    build_parser().parse_args(exec_start.group(2).split())
    container = (DEPLOY / "Containerfile").read_text()
    entry, cmd = (re.search(rf"^{word} (.+)$", container, re.M) for word in ("ENTRYPOINT", "CMD"))
    assert entry is not None and cmd is not None
    assert json.loads(entry.group(1)) == ["roomcast"]
    build_parser().parse_args(json.loads(cmd.group(1)))
    compose = (DEPLOY / "compose.yaml").read_text().replace("\\\n#", " ")
    turn_config = re.search(r"roomcast turn-config (.+?) >", compose, re.S)
    assert turn_config is not None
    argv = turn_config.group(1).replace("<public ip>", "203.0.113.10").split()
    assert turn_config_main(argv, env={"ROOMCAST_TURN_SECRET": "s" * 32}) == 0
    out = capsys.readouterr().out
    assert "min-port=49160" in out and "max-port=49200" in out and "static-auth-secret" in out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    roomcast = shutil.which("roomcast") or "/usr/bin/true"
    unit = (DEPLOY / "roomcast.service").read_text().replace("/opt/roomcast/bin/roomcast", roomcast)
    unit = unit.replace("EnvironmentFile=/etc/roomcast/roomcast.env", f"EnvironmentFile=-{tmp_path}/roomcast.env")
    (tmp_path / "roomcast.service").write_text(unit)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "roomcast.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [line for line in done.stderr.splitlines() if "roomcast.service" in line]
    assert done.returncode == 0 and not problems, done.stderr
