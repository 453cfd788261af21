"""Dynacast: a publisher encodes only the simulcast layers someone may receive (LiveKit's dynacast, read not
copied). Once a second, for each simulcast track, the highest layers its subscribers may be given (their
quality or shown size; plus the lowest, so a new viewer gets a picture at once) are compared with what the
publisher was last told; a change is sent to it (signaling ``publisher_layers``, the JS SDK sets
``encodings[i].active``). A bandwidth limit does not turn a layer off: the subscriber may move back up."""

from __future__ import annotations

from collections.abc import Callable

from roomcast.sfu.router import Router
from roomcast.sfu.simulcast import SimulcastConsumer

INTERVAL = 1.0

# (room, publisher's owner id, publisher's track id, rids to keep encoding)
Notify = Callable[[str, str, str, list[str]], None]


class Dynacast:
    def __init__(self, notify: Notify) -> None:
        self.notify = notify
        self.announced: dict[str, dict[str, tuple[str, ...]]] = {}  # room -> producer sid -> rids last told
        self._next: dict[str, float] = {}  # room -> next check

    def tick(self, router: Router, now: float) -> None:
        if now < self._next.get(router.room, 0.0):
            return
        self._next[router.room] = now + INTERVAL
        announced = self.announced.setdefault(router.room, {})
        for producer in router.producers.values():
            if len(producer.layers) < 2 or not producer.track_id:
                continue
            wanted = {0}
            for consumer in producer.consumers:
                if isinstance(consumer, SimulcastConsumer) and not consumer.paused:
                    # what the subscriber may be given, not what its bandwidth allows now: a layer it could
                    # move up to must keep flowing (its bitrate is measured, the move needs no restart)
                    wanted.add(consumer.max_spatial)
                    if consumer.pending >= 0:
                        wanted.add(consumer.pending)
            rids = tuple(producer.layers[i].rid for i in sorted(wanted) if producer.layers[i].rid)
            if announced.get(producer.sid) != rids:
                announced[producer.sid] = rids
                self.notify(router.room, producer.owner, producer.track_id, list(rids))
        for sid in [sid for sid in announced if sid not in router.producers]:
            del announced[sid]

    def forget_room(self, room: str) -> None:
        self._next.pop(room, None)
        self.announced.pop(room, None)
