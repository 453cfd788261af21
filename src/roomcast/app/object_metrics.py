"""What the server holds, counted: asyncio tasks and its own long-lived objects, as ``/metrics`` gauges.

A leak shows first as a container that only grows (a map keyed by a departed participant, a timer per
closed connection, a task per finished socket), long before it shows in RSS. The fault and attack tests
(``tests/support/resources.py``, RELIABILITY O4) sample these before, during and after and assert each
returns to its baseline; the soak (``bench/soak.py``) plots them over time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sized
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from roomcast.rooms.manager import RoomManager
from roomcast.rooms.resume import ResumeRegistry


def _size(obj: object, attribute: str) -> int:
    """``len(obj.attribute)``, 0 when the object has no such container (another endpoint kind)."""
    value = getattr(obj, attribute, None)
    return len(value) if isinstance(value, Sized) else 0


class ObjectCollector(Collector):
    """``roomcast_asyncio_tasks`` and ``roomcast_objects{kind=...}``; cheap (sizes of dicts), read on scrape."""

    def __init__(self, manager: RoomManager, resume: ResumeRegistry, sessions: Callable[[], int]) -> None:
        self.manager = manager
        self.resume = resume
        self.sessions = sessions
        self.media: Any = None  # the MediaService, once the lifespan started it
        self.loop: asyncio.AbstractEventLoop | None = None

    def counts(self) -> dict[str, int]:
        rooms = self.manager.rooms.values()
        counts = {
            "rooms": len(self.manager.rooms),
            "participants": sum(len(r.participants) for r in rooms),
            "signaling_sessions": self.sessions(),
            "resume_parked": len(self.resume.parked),
            "resume_deadlines": _size(self.resume, "_deadlines"),
            "revoked_tokens": _size(self.manager, "_revoked"),
            "kicked": _size(self.manager, "_kicked"),
            "auto_room_clients": _size(self.manager, "_auto_rooms"),
        }
        media = self.media
        if media is not None:
            routers = list(media.routers.values())
            counts.update(
                {
                    "media_owners": len(media.owners),
                    "media_transports": sum(len(v) for v in media.owners.values()),
                    "routers": len(routers),
                    "router_participants": sum(len(r.participants) for r in routers),
                    "producers": sum(len(r.producers) for r in routers),
                    "consumers": sum(len(p.consumers) for r in routers for p in r.producers.values()),
                    "data_routers": len(media.data_routers),
                    "tracks_pending": len(media._tracks_pending),
                    "capture_heights": len(media.capture_heights),
                    "dynacast_rooms": _size(media.dynacast, "announced") + _size(media.dynacast, "_next"),
                    "endpoint_ufrags": _size(media.endpoint, "by_ufrag"),
                    "endpoint_addresses": _size(media.endpoint, "by_addr"),
                    "endpoint_timers": _size(media.endpoint, "_timers"),
                    "endpoint_rate_buckets": _size(media.endpoint, "_buckets"),
                }
            )
        return counts

    def collect(self) -> Iterator[Metric]:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            yield GaugeMetricFamily(
                "roomcast_asyncio_tasks", "Tasks alive on the server's event loop", value=len(asyncio.all_tasks(loop))
            )
        transport = getattr(self.media.endpoint, "transport", None) if self.media is not None else None
        if transport is not None and hasattr(transport, "get_write_buffer_size"):
            yield GaugeMetricFamily(
                "roomcast_media_send_buffered_bytes",
                "Datagrams the media socket could not take at once, waiting in user space (RELIABILITY F7)",
                value=transport.get_write_buffer_size(),
            )
        objects = GaugeMetricFamily("roomcast_objects", "Long-lived objects the server holds, by kind", labels=["kind"])
        for kind, value in self.counts().items():
            objects.add_metric([kind], value)
        yield objects
