import base64
import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest

from roomcast.turn.coturn_config import DENIED_PEER_RANGES, CoturnOptions, render_coturn_config
from roomcast.turn.credentials import ice_servers, mint_turn_credentials


def test_turn_rest_credentials_known_answer() -> None:
    creds = mint_turn_credentials("s3cret", "alice", now=1_000_000_000, ttl=300)
    assert creds.username == "1000000300:alice"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000000300:alice", hashlib.sha1).digest()).decode()
    assert creds.password == expected and creds.expires_at == 1_000_000_300


def test_ice_servers_shape() -> None:
    creds = mint_turn_credentials("x" * 20, "bob", now=0)
    servers = ice_servers("turn.example", 3478, creds, tls_port=5349)
    assert servers[0] == {"urls": ["stun:turn.example:3478"]}
    assert servers[1]["urls"] == [
        "turn:turn.example:3478?transport=udp",
        "turn:turn.example:3478?transport=tcp",
        "turns:turn.example:5349?transport=tcp",
    ]
    assert servers[1]["username"] == creds.username


def test_production_config_denies_every_private_range() -> None:
    text = render_coturn_config(CoturnOptions(secret="a" * 32))
    for r in DENIED_PEER_RANGES:
        assert f"denied-peer-ip={r}\n" in text
    assert "allow-loopback-peers" not in text
    for line in ("use-auth-secret", "no-cli", "no-tls", "fingerprint", "user-quota=10", "max-bps=500000"):
        assert line in text


def test_dev_config_allows_loopback_only() -> None:
    text = render_coturn_config(CoturnOptions(secret="a" * 32, dev=True, listen_ip="127.0.0.1"))
    assert "allow-loopback-peers" in text and "denied-peer-ip=127." not in text
    assert "denied-peer-ip=10.0.0.0-10.255.255.255" in text


def test_tls_config(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    text = render_coturn_config(CoturnOptions(secret="a" * 32, cert=str(cert), key=str(key), tls_port=5349))
    assert f"cert={cert}" in text and "tls-listening-port=5349" in text and "no-tls\n" not in text


@pytest.mark.parametrize(
    "options",
    [
        CoturnOptions(secret="short"),
        CoturnOptions(secret="a" * 32, listen_ip="not-an-ip"),
        CoturnOptions(secret="a" * 32, min_port=60000, max_port=50000),
        CoturnOptions(secret="a" * 32, cert="/nonexistent.pem", key="/nonexistent.key"),
        CoturnOptions(secret="a" * 32, cert="/nonexistent.pem"),
    ],
)
def test_bad_options_are_refused(options: CoturnOptions) -> None:
    with pytest.raises(ValueError):
        render_coturn_config(options)


def test_cli_writes_a_config(tmp_path: Path) -> None:
    out = tmp_path / "turnserver.conf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "roomcast",
            "turn-config",
            "--secret",
            "b" * 32,
            "--external-ip",
            "203.0.113.9",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "external-ip=203.0.113.9" in out.read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "roomcast", "turn-config", "--secret", "short"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "at least 16" in bad.stderr
