"""A refused channel's stream reset ends (RFC 8831 §6.7, RFC 6525): each side resets its outgoing stream
once. Before the fix, a reset request for a stream we had already reset (the refused OPEN's) made us reset
it again, so two of our associations (the SDK and the server) bounced RECONFIG chunks forever: 200
refused OPENs cost the server about a millisecond each and overflowed socket buffers
(tests/security/test_authenticated_media.py, B6)."""

from __future__ import annotations

from dataclasses import dataclass

from roomcast.proto.common import Transmit
from roomcast.proto.sctp import ChannelClosed, ChannelRefused
from tests.proto.test_sctp import Ep, connected
from tests.proto.test_sctp_limits import LABELS


@dataclass
class CountingEp(Ep):
    sent: int = 0

    def poll_transmit(self) -> Transmit | None:
        item = super().poll_transmit()
        self.sent += item is not None
        return item


def test_a_refused_channel_is_reset_once_and_the_association_goes_quiet() -> None:
    net, client, server = connected(server_options={"channel_limits": LABELS, "max_channels": len(LABELS)})
    ends = [CountingEp(e.address, e.peer, e.assoc, e.events) for e in (client, server)]
    client_ep, server_ep = ends
    for stream in range(4, 24, 2):  # ten OPENs of a label the server does not serve
        client.assoc.open_channel(stream, "surprise", now=net.now)
    assert net.run_until(lambda: sum(isinstance(e, ChannelRefused) for e in server_ep.events) == 10, ends, net.now + 5)
    assert net.run_until(lambda: not set(range(4, 24, 2)) & set(client.assoc.channels), ends, net.now + 5)
    assert {e.stream_id for e in client_ep.events if isinstance(e, ChannelClosed)} >= set(range(4, 24, 2))
    net.run_until(lambda: False, ends, net.now + 2)  # settle: the last responses and SACKs
    before = client_ep.sent + server_ep.sent
    net.run_until(lambda: False, ends, net.now + 10)
    assert client_ep.sent + server_ep.sent - before <= 4, client_ep.sent + server_ep.sent - before  # heartbeats at most
