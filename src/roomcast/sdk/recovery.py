"""Loss recovery for an SDK subscriber: NACK what is missing, put retransmissions back in place.

A subscriber that keeps what it receives (a recorder) cannot conceal a lost packet the way a player can:
it asks for it (Generic NACK, RFC 4585 §6.2.1) and the server resends it from its RTX cache on the RTX
stream the answer paired with the media SSRC (``a=ssrc-group:FID``, RFC 4588 §8). :meth:`process` turns
such a retransmission back into the original packet (RFC 4588 §4) before frames are assembled.
"""

from __future__ import annotations

from collections.abc import Callable

from roomcast.proto.feedback import NackGenerator
from roomcast.wire import ParseError
from roomcast.wire.rtcp import GenericNack
from roomcast.wire.rtp import unwrap_rtx
from roomcast.wire.sdp import SessionDescription

NACK_INTERVAL = 0.02  # seconds between NACK rounds (each missing packet is asked again after an RTT)
FEEDBACK_SSRC = 0x53444B31  # "SDK1": the sender SSRC of a subscriber's feedback


class Recovery:
    def __init__(self, answer: SessionDescription, send_rtcp: Callable[[bytes], None]) -> None:
        self.send_rtcp = send_rtcp
        self.rtx_of: dict[int, int] = {}  # RTX SSRC -> media SSRC
        self.apt: dict[int, int] = {}  # RTX payload type -> media payload type
        for m in answer.media:
            for group in m.ssrc_groups():
                if group.semantics == "FID" and len(group.ssrcs) == 2:
                    self.rtx_of[group.ssrcs[1]] = group.ssrcs[0]
            for codec in m.codecs():
                apt = codec.fmtp_params().get("apt", "") if codec.mime == "rtx" else ""
                if apt.isdigit():
                    self.apt[codec.payload_type] = int(apt)
        self.nacks: dict[int, NackGenerator] = {}
        self.recovered = 0  # retransmissions received
        self.nacked = 0  # sequence numbers asked for
        self._last_round = float("-inf")

    def process(self, pkt: bytes, now: float) -> bytes | None:
        """The media packet ``pkt`` is or carries (None for an RTX packet that cannot be unwrapped)."""
        if len(pkt) < 12:
            return pkt
        ssrc = int.from_bytes(pkt[8:12], "big")
        media_ssrc = self.rtx_of.get(ssrc)
        if media_ssrc is not None:
            media_pt = self.apt.get(pkt[1] & 0x7F)
            if media_pt is None:
                return None
            try:
                pkt = unwrap_rtx(pkt, media_ssrc, media_pt)
            except ParseError:
                return None
            self.recovered += 1
            ssrc = media_ssrc
        nack = self.nacks.get(ssrc)
        if nack is None:
            nack = self.nacks[ssrc] = NackGenerator()
        nack.on_packet(int.from_bytes(pkt[2:4], "big"), now)
        if now - self._last_round >= NACK_INTERVAL:
            self._last_round = now
            for media, generator in self.nacks.items():
                lost = generator.due(now)
                if lost:
                    self.nacked += len(lost)
                    self.send_rtcp(GenericNack(FEEDBACK_SSRC, media, tuple(lost)).serialize())
        return pkt
