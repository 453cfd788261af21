"""Pick the routing implementation from the configuration (Redis only when a URL is given)."""

from __future__ import annotations

from roomcast.routing.api import Routing
from roomcast.routing.local import LocalRouting


def make_routing(redis_url: str, node_id: str) -> Routing:
    if not redis_url:
        return LocalRouting(node_id)
    from roomcast.routing.redis import RedisRouting

    return RedisRouting(redis_url, node_id)
