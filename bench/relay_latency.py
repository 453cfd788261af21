"""What a relayed signaling socket costs: ping → pong round trips through the room's node directly versus
through another node (client → node-2 → Redis stream → node-1 → Redis stream → node-2 → client).

    python -m bench.relay_latency [--pings 300]

Starts a real ``redis-server`` and two ``roomcast serve`` nodes on loopback (run it inside a private
network namespace: ``unshare -n sh -c 'ip link set lo up && python -m bench.relay_latency'``), joins one
room through each and prints the round-trip percentiles and their ratio. Media never takes this path (it
goes straight to the room's node): the figure is the added signaling latency of a join, an offer, a data
message over the socket, and the cost a local IPC would have had to beat for ``--workers``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.signaling.wsclient import Client
from tests.support.cluster import ClusterProcesses


async def round_trips(client: Client, count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        await client.send({"type": "ping", "ts": float(i)})
        while (await client.recv())["type"] != "pong":
            pass
        times.append(1000 * (time.perf_counter() - start))
        await asyncio.sleep(0.025)  # under the session's 50 messages/s limit (a rate-limited ping gets no pong)
    return times


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * len(ordered))], ordered[int(0.99 * len(ordered))]


async def run(pings: int) -> None:
    cluster = ClusterProcesses(Path(tempfile.mkdtemp(prefix="relay-bench-")))
    try:
        one, two = cluster.nodes
        direct, _ = await Client.joined(one.ws_base, "bench-relay", "direct")  # the room lands on node-1
        relayed, _ = await Client.joined(two.ws_base, "bench-relay", "relayed")
        await round_trips(direct, 50)  # warm-up
        await round_trips(relayed, 50)
        a = await round_trips(direct, pings)
        b = await round_trips(relayed, pings)
        pa, pb = percentiles(a), percentiles(b)
        print(json.dumps({"pings": pings, "direct_ms": pa, "relayed_ms": pb}))
        print(f"ping round trip, p50/p95/p99 ms: direct {pa[0]:.2f}/{pa[1]:.2f}/{pa[2]:.2f}, "
              f"relayed {pb[0]:.2f}/{pb[1]:.2f}/{pb[2]:.2f}; relayed/direct at p50 {pb[0] / pa[0]:.2f}x, "
              f"added {pb[0] - pa[0]:.2f} ms")  # fmt: skip
        await direct.close()
        await relayed.close()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=300)
    asyncio.run(run(parser.parse_args().pings))


if __name__ == "__main__":
    main()
