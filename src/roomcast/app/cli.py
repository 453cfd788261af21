"""The ``roomcast`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

from roomcast import __version__
from roomcast.app.config import Config, ConfigError, load
from roomcast.app.logs import configure_logging
from roomcast.app.workers import supervise, worker_count
from roomcast.rooms.tokens import Grants, mint, parse_duration, validate_identity, validate_room
from roomcast.routing.api import RoutingError
from roomcast.routing.factory import check_reachable

WS_MAX_FRAME = 1024 * 1024  # frames above the 64 KiB message cap still get a typed error, then 1009


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the server (embedded defaults: one node, in-memory rooms)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP/WebSocket port (default 7880)")
    p.add_argument("--media-port", type=int, dest="media_port", help="UDP port for all media (default 7882; 0 = any)")
    p.add_argument(
        "--media-tcp-port",
        type=int,
        dest="media_tcp_port",
        help="TCP port for ICE over TCP, for clients whose UDP is blocked (default 7881; 0 = off)",
    )
    p.add_argument(
        "--media-tcp-public-port",
        type=int,
        dest="media_tcp_public_port",
        help="ICE-TCP port announced to clients when a port forward maps it to --media-tcp-port (e.g. 443)",
    )
    p.add_argument("--public-ip", dest="public_ip", help="IP announced in ICE candidates (default: the bind address)")
    p.add_argument("--media-host", dest="media_host", help="address for the media UDP socket (default: all interfaces)")
    p.add_argument("--config", help="TOML config file (also ROOMCAST_CONFIG)")
    p.add_argument("--max-rooms", type=int, dest="max_rooms")
    p.add_argument("--max-participants", type=int, dest="max_participants", help="default per-room limit")
    p.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--users", dest="users_file", help="password users for the pages (TOML, argon2 hashes)")
    p.add_argument("--roles", dest="roles_file", help="grants by role for logged-in users (TOML [roles.NAME])")
    p.add_argument(
        "--oidc-issuer", dest="oidc_issuer", help="OpenID Connect login (secret: ROOMCAST_OIDC_CLIENT_SECRET)"
    )
    p.add_argument("--oidc-client-id", dest="oidc_client_id")
    p.add_argument(
        "--log-format",
        dest="log_format",
        choices=["text", "json"],
        help="text lines with key=value fields, or one JSON object per line (default text)",
    )
    p.add_argument("--tls-cert", dest="tls_cert", help="serve HTTPS/WSS with this certificate (PEM)")
    p.add_argument("--tls-key", dest="tls_key", help="private key (PEM) for --tls-cert")
    p.add_argument("--turn-host", dest="turn_host", help="coturn host announced to clients (with ROOMCAST_TURN_SECRET)")
    p.add_argument("--turn-port", dest="turn_port", type=int, help="coturn port (default 3478)")
    p.add_argument(
        "--consent-timeout",
        dest="consent_timeout",
        type=float,
        help="seconds without ICE consent checks before a media connection is dead (RFC 7675; default 30)",
    )
    p.add_argument(
        "--webhook-url",
        dest="webhook_url",
        action="append",
        help="POST signed JSON events (rooms, participants, tracks, WHIP/WHEP sessions) here; repeat for several",
    )
    p.add_argument(
        "--recordings-dir",
        dest="recordings_dir",
        help="enable recordings (POST /api/rooms/{room}/recordings): one file per participant in this directory",
    )
    p.add_argument(
        "--drain-timeout",
        dest="drain_timeout",
        type=float,
        help="on SIGTERM, seconds open signaling sockets get to finish before they are closed (default 5)",
    )
    p.add_argument(
        "--dev",
        action="store_true",
        help="allow dev mode (no API key: anyone can mint tokens) on a non-loopback --host; never on a public network",
    )
    p.add_argument(
        "--allowed-hosts",
        dest="allowed_hosts",
        help="comma-separated Host names served (e.g. rtc.example.com,*.example.com; '*' = any). Default: any, "
        "or in dev mode IP addresses and localhost only",
    )
    p.add_argument(
        "--header-timeout",
        dest="header_timeout",
        type=float,
        help="seconds a connection gets to send its request head or WebSocket handshake (default 10)",
    )
    p.add_argument(
        "--max-sockets",
        dest="max_sockets",
        type=int,
        help="open connections on the HTTP port in all (default: from the file-descriptor limit)",
    )
    p.add_argument(
        "--redis-url",
        dest="redis_url",
        help="join the cluster coordinated by this Redis, redis://host:port/db (ROOMCAST_REDIS_URL; "
        "default: none, this process alone); see docs/deploy.md",
    )
    p.add_argument("--node-id", dest="node_id", help="this node's name in the cluster (default: a random id)")
    p.add_argument(
        "--workers",
        help="worker processes behind the one HTTP port, each with its own media ports (media port + i): "
        "a number or 'auto' (one per core); more than 1 needs --redis-url (default 1)",
    )
    p.add_argument("--listen-fd", dest="listen_fd", type=int, help=argparse.SUPPRESS)  # a worker's inherited socket
    p.add_argument(
        "--max-sockets-per-ip",
        dest="max_sockets_per_ip",
        type=int,
        help="open connections on the HTTP port per client IP, IPv6 per /64 (default 256; 0 = no limit)",
    )


def _token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="print an access token (JWT) for a participant")
    p.add_argument("--room", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--name")
    p.add_argument("--metadata")
    p.add_argument("--ttl", default="6h", help="lifetime, e.g. 90s, 15m, 6h, 2d (default 6h)")
    p.add_argument("--can-publish", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--can-subscribe", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--can-publish-data", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--room-admin", action="store_true", default=False)
    p.add_argument("--hidden", action="store_true", default=False)
    p.add_argument("--config", help="TOML config file holding api_key/api_secret")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomcast", description="Roomcast real-time audio/video/data server")
    parser.add_argument("--version", action="version", version=f"roomcast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _token_parser(sub)
    sub.add_parser("bench", help="measure the forwarding hot path (µs per forwarded packet)", add_help=False)
    sub.add_parser("turn-config", help="write a coturn config with secure defaults", add_help=False)
    sub.add_parser(
        "doctor", help="check from here why a call cannot connect (DNS, TLS, signaling, ICE, TURN)", add_help=False
    )
    sub.add_parser("load", help="load-test a server with real bots and write a report", add_help=False)
    sub.add_parser("iot", help="run an IoT device agent (camera, telemetry, remote control)", add_help=False)
    return parser


def _dev_warning(config: Config) -> None:
    if config.dev_mode:
        print(
            "WARNING: no ROOMCAST_API_KEY/ROOMCAST_API_SECRET set; using the public dev credentials\n"
            f"         API key: {config.api_key}   API secret: {config.api_secret}\n"
            "         Anyone can mint tokens for this server. Never expose it like this.",
            file=sys.stderr,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refuse_public_dev_mode(config: Config, allowed: bool) -> None:
    """Dev mode serves ``/api/dev-token`` (admin tokens for anyone): loopback only, unless ``--dev`` says so."""
    if config.dev_mode and not _is_loopback(config.host) and not allowed:
        raise ConfigError(
            f"dev mode (no ROOMCAST_API_KEY/ROOMCAST_API_SECRET) on {config.host}: anyone who can reach it can mint "
            "admin tokens. Set the key pair, bind to 127.0.0.1, or pass --dev to accept this on a trusted network"
        )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from roomcast.app.asgi import create_app
    from roomcast.app.http_guard import guarded_protocols, raise_fd_limit

    class Server(uvicorn.Server):
        """Exit 0 after a graceful SIGINT/SIGTERM shutdown instead of re-raising the signal. The first
        SIGTERM drains (:mod:`roomcast.app.drain`) before the exit; a second one, or SIGINT, exits now."""

        draining = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if sig == signal.SIGTERM and not self.draining and not self.should_exit:
                self.draining = app.state.drain.request(self._drained)
                if self.draining:
                    return
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        def _drained(self) -> None:
            self.should_exit = True

    config = load(
        {
            "host": args.host,
            "port": args.port,
            "media_port": args.media_port,
            "media_tcp_port": args.media_tcp_port,
            "media_tcp_public_port": args.media_tcp_public_port,
            "public_ip": args.public_ip,
            "media_host": args.media_host,
            "max_rooms": args.max_rooms,
            "max_participants": args.max_participants,
            "log_level": args.log_level,
            "log_format": args.log_format,
            "users_file": args.users_file,
            "roles_file": args.roles_file,
            "oidc_issuer": args.oidc_issuer,
            "oidc_client_id": args.oidc_client_id,
            "tls_cert": args.tls_cert,
            "tls_key": args.tls_key,
            "turn_host": args.turn_host,
            "turn_port": args.turn_port,
            "consent_timeout": args.consent_timeout,
            "drain_timeout": args.drain_timeout,
            "recordings_dir": args.recordings_dir,
            "webhook_urls": ",".join(args.webhook_url) if args.webhook_url else None,
            "allowed_hosts": args.allowed_hosts,
            "header_timeout": args.header_timeout,
            "max_sockets": args.max_sockets,
            "max_sockets_per_ip": args.max_sockets_per_ip,
            "redis_url": args.redis_url,
            "node_id": args.node_id,
        },
        config_file=args.config,
    )
    _refuse_public_dev_mode(config, args.dev)
    workers = worker_count(args.workers)
    if args.listen_fd is None:  # the supervisor, or a single process (workers re-check nothing)
        try:
            check_reachable(config.redis_url)
        except RoutingError as exc:
            raise ConfigError(exc.message) from None
    if workers > 1 and args.listen_fd is None:
        _dev_warning(config)
        return supervise(config, workers, args.argv)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _dev_warning(config)
    fds_before, fds = raise_fd_limit()
    app = create_app(config)
    http_protocol, ws_protocol = guarded_protocols(app.state.guard)
    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            http=http_protocol,
            ws=ws_protocol,
            log_level=config.log_level,
            ws_max_size=WS_MAX_FRAME,
            ws_ping_interval=20,
            ws_per_message_deflate=False,  # small JSON: compression saves little and costs ~300 KiB per socket
            ws_ping_timeout=20,
            lifespan="on",
            timeout_graceful_shutdown=5,
            ssl_certfile=config.tls_cert or None,
            ssl_keyfile=config.tls_key or None,
        )
    )
    # after uvicorn.Config, which installs uvicorn's handlers: format, node stamp, repeat limit, redaction
    configure_logging(config.log_format, app.state.routing.node_id)  # the name the cluster and /admin show
    limits = app.state.guard.limits
    logging.getLogger("roomcast.app").info(
        "file descriptors: %d (was %d); HTTP port: at most %d connections, %s per IP, %gs for a request head",
        fds,
        fds_before,
        limits.max_sockets,
        limits.max_sockets_per_ip or "no limit",
        limits.header_timeout,
    )
    scheme = "https" if config.tls_cert else "http"
    listening = f"roomcast {__version__} listening on {scheme}://{config.host}:{config.port}/"
    if config.log_format == "json":  # every line of a JSON log is JSON
        logging.getLogger("roomcast.app").info(listening)
    else:
        print(listening, file=sys.stderr, flush=True)
    server.run(sockets=[socket.socket(fileno=args.listen_fd)] if args.listen_fd is not None else None)
    return 0


def token(args: argparse.Namespace) -> int:
    config = load(config_file=args.config)
    _dev_warning(config)
    validate_room(args.room)
    validate_identity(args.identity)
    grants = Grants(
        room=args.room,
        can_publish=args.can_publish,
        can_subscribe=args.can_subscribe,
        can_publish_data=args.can_publish_data,
        room_admin=args.room_admin,
        hidden=args.hidden,
    )
    print(
        mint(
            config.api_key,
            config.api_secret,
            identity=args.identity,
            grants=grants,
            now=time.time(),
            ttl=parse_duration(args.ttl),
            name=args.name,
            metadata=args.metadata,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from roomcast.tools.bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["iot"]:
        from roomcast.tools.iot import iot_main

        return iot_main(argv[1:])
    if argv[:1] == ["hash-password"]:
        from roomcast.app.identity import hash_password_main

        return hash_password_main(argv[1:])
    if argv[:1] == ["doctor"]:
        from roomcast.tools.doctor import doctor_main

        return doctor_main(argv[1:])
    if argv[:1] == ["load"]:
        from roomcast.tools.load import load_main

        return load_main(argv[1:])
    if argv[:1] == ["turn-config"]:
        from roomcast.turn.coturn_config import turn_config_main

        return turn_config_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # serve --workers N starts its workers with the same arguments
    try:
        if args.command == "serve":
            return serve(args)
        return token(args)
    except (ConfigError, ValueError) as exc:
        print(f"roomcast: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
