"""The composition root of the HTTP side: pages, JS SDK, admin API, metrics and ``WS /rtc``."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path

import msgspec
from livekit.protocol.models import DisconnectReason as LkDisconnect
from livekit.protocol.rtc import ICEServer as LkIceServer
from livekit.protocol.rtc import LeaveRequest as LkLeave
from livekit.protocol.rtc import SignalResponse as LkSignalResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from roomcast import __version__
from roomcast.app.admin_api import AdminApi
from roomcast.app.cluster import Cluster, LoadMeter, RoutingCollector
from roomcast.app.cluster_api import ClusterAdmin, nodes_route
from roomcast.app.cluster_sockets import ClusterSockets
from roomcast.app.config import Config
from roomcast.app.dashboard import Dashboard
from roomcast.app.drain import Drain
from roomcast.app.http_guard import ConnectionGuard, GuardLimits, socket_budget
from roomcast.app.http_policy import HostCheck, HttpPolicy, ScriptFiles, page_csp
from roomcast.app.login import PageLogin
from roomcast.app.object_metrics import ObjectCollector
from roomcast.app.recordings_api import RecordingsApi, recording_service
from roomcast.app.webhooks import WebhookCollector, Webhooks
from roomcast.apps.rules import DataRules
from roomcast.livekit.session import LiveKitSession
from roomcast.livekit.twirp import RoomServiceApi
from roomcast.livekit.ws import serve_livekit, token_of, validate
from roomcast.rooms.manager import RoomManager, client_key
from roomcast.rooms.model import Participant, PublishedTrack, PublisherLayersEvent, Room
from roomcast.rooms.rate import MessageBudget
from roomcast.rooms.resume import ResumeRegistry
from roomcast.routing.api import Routing, RoutingError
from roomcast.routing.factory import make_routing
from roomcast.rtc.service import MediaService, start_media
from roomcast.runtime.driver import TimerDriver
from roomcast.runtime.memory import trim_after_departures
from roomcast.runtime.tcp import TcpLimits
from roomcast.signaling.messages import Error, IceServer
from roomcast.signaling.session import SessionLimits, SignalingSession
from roomcast.signaling.socket import FrameSocket, StarletteSocket
from roomcast.signaling.ws import serve_session
from roomcast.turn.credentials import ice_servers as turn_ice_servers
from roomcast.turn.credentials import mint_turn_credentials
from roomcast.whip.http import WhipHttp
from roomcast.whip.service import WhipLimits, WhipService

WEB_DIR = Path(str(resources.files("roomcast") / "web"))
log = logging.getLogger("roomcast.app")
PAGES = {
    "/": "index.html",
    "/call": "call.html",
    "/chat": "chat.html",
    "/echo": "echo.html",
    "/stream": "stream.html",
    "/iot": "iot.html",
    "/live": "live.html",
    "/classroom": "classroom.html",
    "/watch": "watch.html",
    "/doctor": "doctor.html",  # the checks of `roomcast doctor`, run in the user's browser (web/doctor.js)
}


class Metrics:
    """Prometheus metrics of one server instance (own registry, so tests can run several apps)."""

    def __init__(self, manager: RoomManager) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, resident memory: for load reports
        rooms = Gauge("roomcast_rooms", "Rooms open on this node", registry=self.registry)
        rooms.set_function(lambda: len(manager.rooms))
        participants = Gauge("roomcast_participants", "Participants connected to this node", registry=self.registry)
        participants.set_function(manager.participant_count)
        self.signaling = Counter(
            "roomcast_signaling_events",
            "Signaling events by kind (joined, token_refused, schema_error, rate_limited, ...)",
            ["event"],
            registry=self.registry,
        )

        self.loop_lag = Gauge(
            "roomcast_event_loop_lag_seconds", "Worst event-loop delay over the last second", registry=self.registry
        )
        self.worst_lag = 0.0  # the gauge's value, for the load this node reports to the cluster
        # The gauge forgets a stall after a second; the histogram keeps every one (docs/faults.md F13).
        self.loop_delay = Histogram(
            "roomcast_event_loop_delay_seconds",
            "How late each 25 ms loop-lag probe fired",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    async def measure_loop_lag(self, interval: float = 0.025) -> None:
        """A timer that should fire every ``interval``; how late it fires is time the loop was stalled
        (to within ``interval``: a stall that starts just before a probe is due is seen almost whole)."""
        loop = asyncio.get_running_loop()
        worst, window_start = 0.0, loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            late = max(0.0, loop.time() - before - interval)
            self.loop_delay.observe(late)
            worst = max(worst, late)
            if loop.time() - window_start >= 1.0:
                self.loop_lag.set(worst)
                self.worst_lag = worst
                worst, window_start = 0.0, loop.time()

    def watch_media(self, media: MediaService) -> None:
        self.registry.register(_MediaCollector(media))

    def watch_routing(self, routing: Routing) -> None:
        """Which node this is (workers share one port: ``/metrics?node=ID`` picks one) and its routing events."""
        info = Gauge("roomcast_node_info", "This node's id in the cluster", ["node"], registry=self.registry)
        info.labels(routing.node_id).set(1)
        self.registry.register(RoutingCollector(routing))

    def watch_http(self, guard: ConnectionGuard) -> None:
        self.registry.register(_HttpCollector(guard))

    def count(self, event: str) -> None:
        self.signaling.labels(event).inc()


class _MediaCollector(Collector):
    """Media counters are plain Counters on the hot path; they become metrics only when scraped."""

    def __init__(self, media: MediaService) -> None:
        self.media = media

    def collect(self) -> Iterator[Metric]:
        counters = self.media.counters()
        forwarded = CounterMetricFamily("roomcast_media_forwarded_packets", "RTP packets sent on by the server")
        forwarded.add_metric([], sum(counters.get(k, 0) for k in ("rtp_echoed", "forwarded", "retransmitted")))
        yield forwarded
        dropped = CounterMetricFamily(
            "roomcast_media_dropped", "Datagrams and packets dropped, by reason", labels=["reason"]
        )
        events = CounterMetricFamily("roomcast_media_events", "Feedback and recovery events", labels=["event"])
        for name, value in sorted(counters.items()):
            if (
                name.startswith(("socket_", "data_dropped_"))
                or (name.startswith("ice_") and name not in ("ice_checks", "ice_restarts", "ice_restarts_completed"))
                or name in _DROPS
            ):
                dropped.add_metric([name], value)
            elif name not in ("forwarded", "forwarded_bytes", "rtp_echoed"):
                events.add_metric([name], value)
        yield dropped
        yield events
        yield GaugeMetricFamily("roomcast_media_transports", "Open WebRTC transports", value=self.media.transports())
        yield GaugeMetricFamily(
            "roomcast_tracks", "Published tracks", value=sum(len(r.producers) for r in self.media.routers.values())
        )
        forwarded_bytes = CounterMetricFamily("roomcast_media_forwarded_bytes", "RTP bytes sent to subscribers")
        forwarded_bytes.add_metric(
            [],
            sum(c.bytes_sent for r in self.media.routers.values() for p in r.producers.values() for c in p.consumers),
        )
        yield forwarded_bytes
        datagrams = CounterMetricFamily("roomcast_media_datagrams", "UDP datagrams", labels=["direction"])
        datagrams.add_metric(["in"], self.media.endpoint.datagrams_in)
        datagrams.add_metric(["out"], self.media.endpoint.datagrams_out)
        yield datagrams


class _HttpCollector(Collector):
    """The HTTP port's connection guard: open sockets and why connections were refused or closed."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        open_now = len(self.guard.open)
        yield GaugeMetricFamily("roomcast_http_sockets", "Open connections on the HTTP port", value=open_now)
        yield GaugeMetricFamily(
            "roomcast_http_sockets_limit", "Most connections the HTTP port holds", value=self.guard.limits.max_sockets
        )
        closed = CounterMetricFamily(
            "roomcast_http_connections_refused",
            "HTTP-port connections refused or closed by the guard, by reason",
            labels=["reason"],
        )
        for reason, value in sorted(self.guard.counters.items()):
            closed.add_metric([reason], value)
        yield closed


_DROPS = frozenset(
    {
        "rtp_malformed",
        "rtp_too_short",
        "rtcp_malformed",
        "rtcp_rate_limited",
        "unknown_ssrc",
        "unknown_packet",
        "srtp_unprotect_failed",
        "srtp_protect_failed",
        "srtp_ssrc_limit",
        "media_before_keys",
        "dtls_unvalidated_address",
        "rtx_padding_dropped",
        "rtx_malformed",
        "rtx_in_dropped",
        "pli_throttled",
        "send_before_connected",
    }
)


def create_app(config: Config, *, clock: Callable[[], float] = time.time, routing: Routing | None = None) -> Starlette:
    manager = RoomManager(
        max_rooms=config.max_rooms,
        default_max_participants=config.max_participants,
        auto_create=config.auto_create_rooms,
        default_mode="sfu" if config.default_room_mode == "sfu" else "p2p",
        data_rules=DataRules,
    )
    metrics = Metrics(manager)
    webhook_urls = [url.strip() for url in config.webhook_urls.split(",") if url.strip()]
    webhooks = Webhooks(webhook_urls, config.api_key, config.api_secret, clock=clock)
    metrics.registry.register(WebhookCollector(webhooks))
    guard = ConnectionGuard(
        GuardLimits(
            max_sockets=socket_budget(config.max_sockets),
            max_sockets_per_ip=config.max_sockets_per_ip,
            header_timeout=config.header_timeout,
        )
    )
    metrics.watch_http(guard)
    admin = AdminApi(config, manager, clock)
    recordings = recording_service(config, clock, webhooks.recording)
    recordings_api = RecordingsApi(admin, recordings, clock)
    if recordings is not None:
        admin.auto_record = recordings.auto.add

    def lifecycle(name: str, room: Room, participant: Participant | None, reason: str) -> None:
        webhooks.lifecycle(name, room, participant, reason)
        if name == "room_finished" and recordings is not None:
            recordings.room_finished(room.name)

    manager.on_lifecycle = lifecycle
    limits = SessionLimits(join_timeout=config.join_timeout, messages_per_second=config.messages_per_second)
    resume = ResumeRegistry(manager, config.resume_window)
    resume_timer = TimerDriver(resume, clock)
    drain = Drain(config.drain_timeout)
    objects = ObjectCollector(manager, resume, lambda: len(drain.sessions))
    metrics.registry.register(objects)
    routing = routing or make_routing(config.redis_url, config.node_id)
    dashboard = Dashboard(config, manager, admin, routing, lambda: metrics.worst_lag, clock)
    login = PageLogin(config, clock)
    admin.dev_tokens = not login.enabled  # with a login, pages get tokens for the logged-in user only
    cluster = Cluster(routing, manager, config.keys, clock)
    cluster.loop_lag = lambda: metrics.worst_lag
    drain.on_start.append(routing.set_draining)
    metrics.watch_routing(routing)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Media on every interface unless told otherwise: a browser on this machine reaches the server
        # through its LAN address (signaling can stay on loopback); only valid ICE checks are answered.
        media_host = config.media_host or ("0.0.0.0" if config.host in ("127.0.0.1", "localhost") else config.host)
        tcp_limits = TcpLimits(
            max_per_ip=config.media_tcp_max_per_ip,
            max_handshaking_per_ip=config.media_tcp_max_handshaking_per_ip,
            max_connections=config.media_tcp_max_connections,
            handshake_timeout=config.media_tcp_handshake_timeout,
        )
        app.state.media = await start_media(
            media_host,
            config.media_port,
            config.public_ip or None,
            config.media_tcp_port,
            tcp_limits,
            config.media_tcp_public_port,
        )
        metrics.watch_media(app.state.media)
        objects.media, objects.loop = app.state.media, asyncio.get_running_loop()

        def tracks_changed(room: str, tracks: list[PublishedTrack]) -> None:
            manager.broadcast_tracks(room, tracks)
            webhooks.tracks_changed(manager.rooms.get(room), room, tracks)
            if recordings is not None:
                recordings.tracks_changed(room, bool(tracks))

        app.state.media.on_tracks_changed = tracks_changed
        app.state.media.on_speakers = manager.broadcast_speakers
        webhooks.start()
        app.state.media.on_publisher_layers = lambda room, owner, track_id, rids: manager.tell_participant(
            room, owner, PublisherLayersEvent(track_id, tuple(rids))
        )
        app.state.media.max_incoming_bitrate = config.max_incoming_bitrate
        app.state.media.max_publishers = config.max_publishers
        app.state.media.max_tracks_per_participant = config.max_tracks_per_participant
        app.state.media.consent_timeout = config.consent_timeout
        app.state.media.transport_cc = config.transport_cc
        whip.media = app.state.media
        app.state.media.on_transport = whip.transport_event
        lag_task = asyncio.create_task(metrics.measure_loop_lag())
        trim_task = asyncio.create_task(trim_after_departures(manager.participant_count))
        drain.attach(asyncio.get_running_loop())
        admin.room_stats = app.state.media.room_stats
        dashboard.media = app.state.media
        log.info(
            "media on udp %s:%d, ICE-TCP %s, candidates for %s",
            media_host,
            app.state.media.candidate_port,
            (
                f"on tcp {media_host}:{app.state.media.tcp_listen_port} (announced {app.state.media.tcp_port})"
                if app.state.media.tcp_port
                else "off"
            ),
            ", ".join(app.state.media.candidate_ips),
        )
        media = app.state.media
        cluster.meter = LoadMeter(lambda: sum(media.counters().get(k, 0) for k in ("forwarded", "retransmitted")))
        cluster.serve_link = sockets.serve_link
        announced = ",".join(f"{ip}:{media.candidate_port}" for ip in media.candidate_ips)
        await routing.start(cluster.load, cluster.on_link, announced)
        try:
            yield
        finally:
            lag_task.cancel()
            trim_task.cancel()
            whip.close()
            if recordings is not None:
                await recordings.close()
            await routing.stop()
            await webhooks.flush(2.0)
            await webhooks.close()
            app.state.media.close()

    def turn_servers(identity: str) -> list[dict[str, object]]:
        """Short-lived TURN credentials per participant (coturn ``use-auth-secret``), when TURN is configured."""
        if not config.turn_secret:
            return []
        credentials = mint_turn_credentials(config.turn_secret, identity, clock(), config.turn_ttl)
        return turn_ice_servers(config.turn_host, config.turn_port, credentials, tls_port=config.turn_tls_port or None)

    def ice_servers(identity: str) -> list[IceServer]:
        return [msgspec.convert(s, IceServer) for s in turn_servers(identity)]

    whip_limits = WhipLimits(
        posts_per_second=config.whip_posts_per_second,
        post_burst=2 * config.whip_posts_per_second,
        max_sessions=config.max_whip_sessions,
        connect_timeout=config.whip_connect_timeout,
    )
    whip = WhipService(
        manager,
        config.keys,
        None,
        clock=clock,
        limits=whip_limits,
        on_event=metrics.count,
        on_session=lambda name, r: webhooks.session(name, r.room, r.participant, r.id, r.kind),
    )
    whip_http = WhipHttp(whip, body_timeout=config.header_timeout, ice_servers=turn_servers)

    connections: collections.Counter[str] = collections.Counter()

    async def refuse(ws: WebSocket, code: str, message: str, close_code: int) -> None:
        await ws.accept()
        if ws.url.path.endswith("/v1"):  # a LiveKit client reads a LeaveRequest, the reason in the close
            reason = LkDisconnect.SERVER_SHUTDOWN if code == "server_shutting_down" else LkDisconnect.JOIN_FAILURE
            await ws.send_bytes(LkSignalResponse(leave=LkLeave(reason=reason)).SerializeToString())
        else:
            await ws.send_text(msgspec.json.encode(Error(code=code, message=message, fatal=True)).decode())
        await ws.close(close_code, code)

    def livekit_session(client: str, media: MediaService | None) -> LiveKitSession:
        def lk_ice_servers(identity: str) -> list[LkIceServer]:
            servers = ice_servers(identity)
            return [LkIceServer(urls=s.urls, username=s.username or "", credential=s.credential or "") for s in servers]

        budget = MessageBudget(limits.messages_per_second, limits.burst, limits.max_rate_violations)
        return LiveKitSession(
            manager,
            config.keys,
            clock,
            media,
            lk_ice_servers,
            client_host=client,
            on_event=metrics.count,
            budget=budget,
        )

    twirp = RoomServiceApi(manager, config.keys, clock, lambda: getattr(app.state, "media", None), metrics.count)

    async def livekit_validate(request: Request) -> Response:
        return await validate(request, livekit_session("", None))

    async def rtc(ws: WebSocket) -> None:
        """``/rtc`` (Roomcast's JSON clients; LiveKit clients' older dual peer connection path, refused with a
        reason) and ``/rtc/v1`` (LiveKit clients: protobuf, one peer connection)."""
        client = client_key(ws.client.host) if ws.client else "?"  # IPv6 counted per /64
        livekit = ws.url.path.endswith("/v1")
        if not livekit and ("sdk" in ws.query_params or "protocol" in ws.query_params):
            metrics.count("livekit_v0_refused")
            await ws.accept()
            await ws.send_bytes(LkSignalResponse(leave=LkLeave(reason=LkDisconnect.JOIN_FAILURE)).SerializeToString())
            await ws.close(1008, "unsupported: LiveKit's dual peer connection path; use singlePeerConnection")
            return
        if drain.active:
            metrics.count("refused_draining")
            await refuse(ws, "server_shutting_down", "this server is shutting down; join again shortly", 1013)
            return
        if config.max_connections_per_ip and connections[client] >= config.max_connections_per_ip:
            metrics.count("connection_limit")
            await refuse(ws, "too_many_connections", "too many connections from your address", 1008)
            return
        connections[client] += 1
        try:
            if livekit:
                try:
                    lk_node = await cluster.route(token_of(ws.query_params, ws.headers))
                except RoutingError:
                    metrics.count("routing_unavailable")
                    await ws.close(1013)  # before the upgrade: the client tries again
                    return
                if lk_node is not None:
                    await sockets.relay_livekit(ws, lk_node, client)
                    return
                lk = livekit_session(client, ws.app.state.media)
                drain.add(lk)
                try:
                    await serve_livekit(ws, lk)
                finally:
                    drain.discard(lk)
                return
            raw_token = ws.query_params.get("access_token", "")
            try:
                node = await cluster.route(raw_token)
            except RoutingError as exc:
                metrics.count("routing_unavailable")
                await refuse(ws, "routing_unavailable", f"cannot place the room now ({exc.message})", 1013)
                return
            if node is not None:
                await sockets.relay(ws, node, raw_token, client)
                return
            await run_session(StarletteSocket(ws), raw_token, client)
        finally:
            connections[client] -= 1
            if connections[client] <= 0:
                del connections[client]

    async def run_session(sock: FrameSocket, raw_token: str, client: str) -> None:
        session = SignalingSession(
            manager,
            config.keys,
            clock=clock,
            client_host=client,
            limits=limits,
            on_event=metrics.count,
            media=app.state.media,
            ice_servers=ice_servers,
            resume=resume,
            resume_timer=resume_timer,
        )
        drain.add(session)
        try:
            await serve_session(sock, session, raw_token)
        finally:
            drain.discard(session)

    def media_now() -> MediaService | None:
        return app.state.media  # type: ignore[no-any-return]  # started in the lifespan

    sockets: ClusterSockets = ClusterSockets(
        cluster, metrics.count, drain, run_session, livekit_session, media_now, refuse
    )

    async def healthz(request: Request) -> Response:
        status = "draining" if drain.active else "ok"
        body = {"status": status, "version": __version__, "rooms": len(manager.rooms)}
        return JSONResponse(body, status_code=503 if drain.active else 200)

    async def prometheus(request: Request) -> Response:
        if config.metrics_token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            expected = config.metrics_token.encode()
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                message = "use Authorization: Bearer <metrics token>"
                body = {"error": {"code": "invalid_credentials", "message": message}}
                return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def page(filename: str) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            headers = {"Cache-Control": "no-cache"}
            if filename.endswith(".html"):
                gate = login.gate(request)  # --users / --oidc-issuer: pages need a login
                if gate is not None:
                    return gate
                headers["Content-Security-Policy"] = page_csp(WEB_DIR / filename)
            return FileResponse(WEB_DIR / filename, headers=headers)

        return endpoint

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", prometheus),
        WebSocketRoute("/rtc", rtc),
        WebSocketRoute("/rtc/v1", rtc),
        Route("/rtc/validate", livekit_validate),
        Route("/rtc/v1/validate", livekit_validate),
        Route("/twirp/livekit.RoomService/{method}", twirp.handle, methods=["POST"]),
        Route("/sdk/roomcast.js", page("roomcast.js")),  # the classic-script shim over the modules below
        Mount("/sdk", app=ScriptFiles(directory=WEB_DIR / "sdk"), name="sdk"),  # ES modules, no build step
        Mount("/static", app=ScriptFiles(directory=WEB_DIR), name="static"),  # page.js is a module too
        *admin.routes(),
        *recordings_api.routes(),
        nodes_route(admin, routing),
        *dashboard.routes(),
        *login.routes(),
        *whip_http.routes(),
        *(Route(path, page(filename)) for path, filename in PAGES.items()),
    ]
    hosts = HostCheck.from_setting(config.allowed_hosts, dev_mode=config.dev_mode)
    middleware = [Middleware(HttpPolicy, hosts=hosts), Middleware(ClusterAdmin, routing=routing)]
    app: Starlette = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.manager = manager
    app.state.config = config
    app.state.metrics = metrics
    app.state.drain = drain
    app.state.whip = whip
    app.state.webhooks = webhooks
    app.state.recordings = recordings
    app.state.guard = guard  # the server's protocol classes enforce it (app/cli.py)
    app.state.routing = routing
    app.state.cluster = cluster
    return app
