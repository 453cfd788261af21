"""Pick the routing implementation from the configuration (Redis only when a URL is given)."""

from __future__ import annotations

from roomcast.routing.api import Routing
from roomcast.routing.local import LocalRouting


def make_routing(redis_url: str, node_id: str) -> Routing:
    if not redis_url:
        return LocalRouting(node_id)
    from roomcast.routing.redis import RedisRouting

    return RedisRouting(redis_url, node_id)


def check_reachable(redis_url: str, patience: float = 5.0) -> None:
    """Fail fast, before the server starts, when the cluster's Redis cannot be reached (``RoutingError``
    saying where; the password left out). Retries for ``patience`` seconds: Redis may be starting too."""
    if not redis_url:
        return
    from roomcast.routing.redis import ping_until

    ping_until(redis_url, patience)
