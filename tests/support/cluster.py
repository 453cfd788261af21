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
