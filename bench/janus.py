"""Janus (Debian package ``janus``) as the peer we benchmark against: a process on private ports and a
minimal client for its HTTP API and the VideoRoom plugin.

Janus runs as an ICE-lite agent bound to ``jlo0`` (127.0.0.2, the TESTING.md recipe: libnice skips
loopback interfaces), so the same bots that drive Roomcast (our SDK: ICE controlling, DTLS, SRTP)
drive Janus too. Publishers send an offer (``joinandconfigure``); subscribers get Janus's offer and
answer it with our own JSEP answerer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

JANUS_LIBS = next(  # Debian's multiarch folder: x86_64-linux-gnu, aarch64-linux-gnu, ...
    (p.parent for p in sorted(Path("/usr/lib").glob("*/janus/plugins"))), Path("/usr/lib/x86_64-linux-gnu/janus")
)
KEEP_PLUGINS = {"libjanus_videoroom.so"}
KEEP_TRANSPORTS = {"libjanus_http.so"}


def _others(folder: str, keep: set[str]) -> str:
    names = sorted(p.name for p in (JANUS_LIBS / folder).glob("*.so") if p.name not in keep)
    return ",".join(names)


class JanusProcess:
    """``janus`` with its own config folder, HTTP port and RTP port range; ``event_loops`` 0 keeps
    Janus's default thread model (one loop per handle), N > 0 shares N loops among all handles."""

    def __init__(self, workdir: Path, http_port: int, rtp_ports: tuple[int, int], event_loops: int = 0) -> None:
        if shutil.which("janus") is None:
            raise RuntimeError("janus is not installed: apt-get install -y janus")
        self.workdir = workdir
        self.http_port = http_port
        conf = workdir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        loops = f"\tevent_loops = {event_loops}\n" if event_loops else ""
        (conf / "janus.jcfg").write_text(
            "general: {\n"
            f'\tconfigs_folder = "{conf}"\n'
            f'\tplugins_folder = "{JANUS_LIBS}/plugins"\n'
            f'\ttransports_folder = "{JANUS_LIBS}/transports"\n'
            f'\tevents_folder = "{JANUS_LIBS}/events"\n'
            f'\tloggers_folder = "{JANUS_LIBS}/loggers"\n'
            "\tdebug_level = 3\n"
            "\tsession_timeout = 120\n"
            f"{loops}"
            "}\n"
            f'media: {{\n\trtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"\n}}\n'
            'nat: {\n\tice_lite = true\n\tice_enforce_list = "jlo0"\n\tignore_mdns = true\n\tnice_debug = false\n}\n'
            f'plugins: {{\n\tdisable = "{_others("plugins", KEEP_PLUGINS)}"\n}}\n'
            f'transports: {{\n\tdisable = "{_others("transports", KEEP_TRANSPORTS)}"\n}}\n'
            f'loggers: {{\n\tdisable = "{_others("loggers", set())}"\n}}\n'
            f'events: {{\n\tbroadcast = false\n\tdisable = "{_others("events", set())}"\n}}\n'
        )
        (conf / "janus.transport.http.jcfg").write_text(
            'general: {\n\tjson = "plain"\n\tbase_path = "/janus"\n\thttp = true\n'
            f'\tport = {http_port}\n\tinterface = "lo"\n\thttps = false\n}}\n'
            "admin: {\n\tadmin_http = false\n}\n"
        )
        (conf / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        self.log = workdir / "janus.log"
        self.proc = subprocess.Popen(
            ["janus", "-C", str(conf / "janus.jcfg"), "-F", str(conf), "-L", str(self.log), "-N", "-o"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{http_port}/janus"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/info", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"janus did not answer on {self.base} within {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus session with any number of plugin handles; one long-poll task dispatches events by
    handle (``sender``), which also keeps the session alive."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.AsyncClient(timeout=40)
        self.session = 0
        self.events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(6)}
        reply: dict[str, Any] = (await self.http.post(self.base + path, json=body)).json()
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        return reply

    async def start(self) -> None:
        self.session = int((await self._post("", {"janus": "create"}))["data"]["id"])
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                reply = await self.http.get(f"{self.base}/{self.session}", params={"maxev": 50})
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            batch = reply.json()
            for event in batch if isinstance(batch, list) else [batch]:
                sender = event.get("sender")
                if sender is not None:
                    self.events.setdefault(int(sender), asyncio.Queue()).put_nowait(event)

    async def attach(self) -> int:
        reply = await self._post(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = int(reply["data"]["id"])
        self.events.setdefault(handle, asyncio.Queue())
        return handle

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a plugin request; synchronous requests answer at once, asynchronous ones by event."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._post(f"/{self.session}/{handle}", request)
        if reply.get("janus") == "success":
            data: dict[str, Any] = reply["plugindata"]["data"]
            if data.get("videoroom") == "event" and "error" in data:
                raise JanusError(str(data["error"]))
            return data
        return reply

    async def wait_event(self, handle: int, key: str, timeout: float = 15.0) -> dict[str, Any]:
        """The next event of ``handle`` that carries ``key`` (``jsep``, a plugin data field) or is of
        that type (``webrtcup``)."""
        queue = self.events[handle]
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
            data = event.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise JanusError(str(data["error"]))
            if key in event or key in data or event.get("janus") == key:
                return event

    async def trickle(self, handle: int, host: str, port: int) -> None:
        """Our one host candidate, then end-of-candidates: Janus waits for both before it checks."""
        if port:
            line = f"candidate:1 1 udp 2130706431 {host} {port} typ host"
            candidate = {"sdpMid": "0", "sdpMLineIndex": 0, "candidate": line}
            await self._post(f"/{self.session}/{handle}", {"janus": "trickle", "candidate": candidate})
        await self._post(f"/{self.session}/{handle}", {"janus": "trickle", "candidate": {"completed": True}})

    async def detach(self, handle: int) -> None:
        with contextlib.suppress(JanusError, httpx.HTTPError):
            await self._post(f"/{self.session}/{handle}", {"janus": "detach"})
        self.events.pop(handle, None)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        with contextlib.suppress(JanusError, httpx.HTTPError):
            await self._post(f"/{self.session}", {"janus": "destroy"})
        await self.http.aclose()
