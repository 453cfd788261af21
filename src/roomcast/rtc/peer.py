"""One peer connection both ways (``$peer``, LiveKit's single peer connection): the client offers every time,
also to receive, so the server chooses which of the offer's receive-only m-lines carry which track.

The client cannot be sent an offer, so when the server has more tracks than free receive-only m-lines it asks
for more (the adapter's message; LiveKit's ``MediaSectionsRequirement``) and answers the re-offer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from roomcast.proto.jsep import DirectionPolicy
from roomcast.wire import ParseError
from roomcast.wire.sdp import MediaDescription, SessionDescription


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which offered m-line carries which track (mid -> track sid), and how many more m-lines of each kind
    the offer would need to carry every wanted track."""

    subscriptions: dict[str, str]
    missing: dict[str, int]


def peer_direction(send_mids: Iterable[str], can_publish: bool) -> DirectionPolicy:
    """Send on the m-lines assigned a track, receive on the others if the participant may publish (the
    answerer narrows it to what the offer allows: a receive-only m-line with no track becomes inactive)."""
    sending = frozenset(send_mids)

    def direction(m: MediaDescription) -> str:
        if (m.mid or "") in sending:
            return "sendonly"
        return "recvonly" if can_publish else "inactive"

    return direction


def assign_tracks(sdp: str, wanted: Mapping[str, str], previous: Mapping[str, str]) -> Assignment:
    """Give each wanted track (sid -> kind) an m-line the offer lets us send on: the one it had
    (``previous``, mid -> sid) if still offered, else a free one of its kind, in offer order."""
    try:
        offer = SessionDescription.parse(sdp)
    except ParseError:
        return Assignment({}, {})
    free: dict[str, list[str]] = {"audio": [], "video": []}
    kinds: dict[str, str] = {}
    for m in offer.media:
        if m.kind in free and m.mid is not None and m.port != 0 and m.direction in ("recvonly", "sendrecv"):
            free[m.kind].append(m.mid)
            kinds[m.mid] = m.kind
    subscriptions: dict[str, str] = {}
    for mid, sid in previous.items():
        kind = wanted.get(sid)
        if kind is not None and kinds.get(mid) == kind and sid not in subscriptions.values():
            subscriptions[mid] = sid
            free[kind].remove(mid)
    missing: dict[str, int] = {}
    placed = set(subscriptions.values())
    for sid, kind in wanted.items():
        if sid in placed or kind not in free:
            continue
        if free[kind]:
            subscriptions[free[kind].pop(0)] = sid
        else:
            missing[kind] = missing.get(kind, 0) + 1
    return Assignment(subscriptions, missing)
