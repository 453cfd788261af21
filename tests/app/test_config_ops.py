"""Start-up refusals of the operations settings (issue 18): each names what to fix."""

from __future__ import annotations

import pytest

from roomcast.app.config import ConfigError, load

KEYS = {"ROOMCAST_API_KEY": "k", "ROOMCAST_API_SECRET": "s" * 40}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ROOMCAST_USERS_FILE": "users.toml"}, "needs ROOMCAST_API_KEY"),  # dev key: anyone could mint tokens
        ({**KEYS, "ROOMCAST_OIDC_ISSUER": "https://idp.example"}, "ROOMCAST_OIDC_CLIENT_SECRET"),
        ({**KEYS, "ROOMCAST_LOG_FORMAT": "xml"}, "log_format"),
        ({**KEYS, "ROOMCAST_MEDIA_TCP_PORT": "70000"}, "media_tcp_port"),
        ({**KEYS, "ROOMCAST_MEDIA_TCP_MAX_HANDSHAKING_PER_IP": "0"}, "media_tcp_max_"),
    ],
)
def test_refused_with_a_reason(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load(env=env)


def test_defaults() -> None:
    config = load(env=KEYS)
    assert (config.media_tcp_port, config.media_tcp_max_per_ip, config.media_tcp_max_handshaking_per_ip) == (
        7881,
        256,
        16,
    )
    assert config.log_format == "text" and not config.users_file and not config.oidc_issuer
    assert load(env={**KEYS, "ROOMCAST_MEDIA_TCP_PORT": "0"}).media_tcp_port == 0  # off
