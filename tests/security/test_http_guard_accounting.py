"""The connection guard's accounting (app/http_guard.py) without sockets: per-IP keys, caps, eviction order."""

from __future__ import annotations

from roomcast.app.http_guard import ConnectionGuard, GuardLimits, client_key


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"


def test_per_ip_cap_then_global_cap_evicts_the_oldest_idle_connection() -> None:
    guard = ConnectionGuard(GuardLimits(max_sockets=3, max_sockets_per_ip=2, header_timeout=1.0))
    closed: list[str] = []
    for name, ip in [("a1", "10.0.0.1"), ("a2", "10.0.0.1")]:
        assert guard.admit(name, ip) is None
        guard.idle(name, lambda name=name: closed.append(name))
    assert guard.admit("a3", "10.0.0.1") == 429  # third from one address
    assert guard.admit("b1", "10.0.0.2") is None
    guard.busy("a1")  # a1 is serving a request now: not evictable
    assert guard.admit("c1", "10.0.0.3") is None  # full: the oldest idle (a2) makes room
    assert closed == ["a2"] and "a2" not in guard.open and guard.per_ip["10.0.0.1"] == 1
    assert guard.admit("d1", "10.0.0.4") == 503  # full, nothing idle to evict
    guard.release("a1")
    guard.release("a1")  # idempotent (both protocols of an upgraded connection may release it)
    assert guard.per_ip.get("10.0.0.1") is None and len(guard.open) == 2
    assert guard.counters == {"refused_per_ip": 1, "evicted_idle": 1, "refused_full": 1}
