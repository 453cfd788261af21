"""Which peer-to-peer negotiation a participant may relay to another (security issue 12, H3).

A relayed offer, answer or candidate sets up media that bypasses the server: no ``canSubscribe``
check, no server mute, no moderation, and the peers learn each other's addresses. So relays exist
only in peer-to-peer rooms, and there the grants are read from what the SDP itself negotiates: the
direction of each m-line, as the sender sees it (RFC 8866 §6.7, RFC 8829 §5.2.2), parsed with the
project's SDP parser instead of searched for substrings (an m-line without ``a=msid`` still sends).
"""

from __future__ import annotations

from roomcast.rooms.model import RoomError
from roomcast.rooms.tokens import Grants
from roomcast.wire import ParseError
from roomcast.wire.sdp import parse
from roomcast.wire.sdp_media import DIRECTIONS

SENDS = frozenset({"sendrecv", "sendonly"})
RECEIVES = frozenset({"sendrecv", "recvonly"})


def check_relay(mode: str, grants: Grants, sdp: str | None) -> None:
    """Refuse a relay (``sdp`` is ``None`` for a candidate) with a typed :class:`RoomError`.

    ``wrong_mode`` in SFU rooms, where media goes through the server; ``invalid_sdp`` for what does not
    parse; ``permission_denied`` for an m-line that sends without ``canPublish`` or receives without
    ``canSubscribe``.
    """
    if mode != "p2p":
        raise RoomError(
            "wrong_mode", "this room routes media through the server: offer to $publish or $subscribe instead"
        )
    if sdp is None or (grants.can_publish and grants.can_subscribe):
        return
    try:
        description = parse(sdp)
    except ParseError as exc:
        raise RoomError("invalid_sdp", f"cannot parse the SDP: {exc}") from None
    session = {name for name, _ in description.attributes if name in DIRECTIONS}
    for index, media in enumerate(description.media):
        if media.kind == "application" and "SCTP" in media.proto:
            continue  # data channels: no direction, governed by canPublishData
        # Conservative: every direction line counts (a duplicate must not hide "sendrecv"); the
        # session level applies when the section has none; none at all means sendrecv (RFC 8866 §6.7).
        directions = {name for name, _ in media.attributes if name in DIRECTIONS} or session or {"sendrecv"}
        said = "/".join(sorted(directions))
        if directions & SENDS and not grants.can_publish:
            raise RoomError(
                "permission_denied",
                f"token lacks the canPublish grant: m-line {index} ({media.kind[:16]}) is {said};"
                " only recvonly or inactive are allowed",
            )
        if directions & RECEIVES and not grants.can_subscribe:
            raise RoomError(
                "permission_denied",
                f"token lacks the canSubscribe grant: m-line {index} ({media.kind[:16]}) is {said};"
                " only sendonly or inactive are allowed",
            )
