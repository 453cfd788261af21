"""Several ``roomcast serve`` nodes on one real ``redis-server`` (each on its own loopback ports)."""

from __future__ import annotations

from pathlib import Path

from tests.support.redis_server import RedisServer
from tests.support.server import ServerProcess


class ClusterProcesses:
    def __init__(self, log_dir: Path, names: tuple[str, ...] = ("node-1", "node-2"), args: list[str] | None = None):
        self.redis = RedisServer(log_dir)
        self.nodes: list[ServerProcess] = []
        try:
            for name in names:
                node_args = ["--redis-url", self.redis.url, "--node-id", name, *(args or [])]
                self.nodes.append(ServerProcess(log_dir, args=node_args, ready_timeout=60))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> list[str]:
        """Stop every node (SIGTERM) and Redis; the problems found (unclean exits, tracebacks)."""
        problems = []
        for node in self.nodes:
            code = node.stop()
            if code != 0:
                problems.append(f"node on :{node.port} exited {code}:\n{node.log()[-3000:]}")
            if "Traceback" in node.log():
                problems.append(f"traceback on :{node.port}:\n{node.log()[-5000:]}")
        self.redis.stop()
        return problems


def calm_and_idle(base: str, auth: tuple[str, str]) -> bool:
    """Every node reports no participants and a loop lag under placement's 100 ms threshold (a loaded test
    machine stalls loops now and then: placement then rightly avoids that node, so a test of the spread
    waits for a calm moment)."""
    import httpx

    try:
        listed = httpx.get(base + "/api/nodes", auth=auth, timeout=5).json()["nodes"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return bool(listed) and all(n["load"]["participants"] == 0 and n["load"]["loop_lag"] < 0.1 for n in listed)
