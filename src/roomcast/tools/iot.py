"""The IoT device agent (``roomcast iot``): stream a camera, publish telemetry, obey remote control.

- video: a pre-encoded VP8 IVF file or H.264 Annex-B file (``.h264``/``.264``), looped in real time
  (no decoding, no encoding);
- telemetry: JSON on the ``telemetry`` topic every ``interval`` seconds from a pluggable sensor (a
  simulated one by default);
- control: JSON ``{"id", "command", "args"}`` on the ``control`` topic runs a registered handler and
  answers ``{"id", "ok", "result" | "error"}`` on ``control-ack`` to the sender only. The server already
  refuses ``control`` from tokens without ``roomAdmin`` (``apps/rules.py``); ``allow`` is the device's
  own, stricter ACL of identities.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from roomcast.sdk import Room, RoomcastError, connect, stream_ffmpeg, stream_h264, stream_ivf

log = logging.getLogger("roomcast.iot")
Handler = Callable[[dict[str, Any]], Any | Awaitable[Any]]


class SimulatedSensor:
    """Temperature and humidity that drift like a room's: a slow wave plus noise."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.start = time.monotonic()

    def read(self) -> dict[str, float]:
        t = time.monotonic() - self.start
        return {
            "temperature": round(21.0 + 2.0 * math.sin(t / 30) + self.rng.uniform(-0.3, 0.3), 2),
            "humidity": round(45.0 + 5.0 * math.cos(t / 45) + self.rng.uniform(-1, 1), 1),
        }


class IotAgent:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        video: str | None = None,
        source: list[str] | None = None,
        telemetry_interval: float = 1.0,
        sensor: Callable[[], dict[str, Any]] | None = None,
        allow: set[str] | None = None,
    ) -> None:
        self.url, self.token, self.video = url, token, video
        self.source = source  # ffmpeg input arguments for a live camera
        self.interval = telemetry_interval
        self.sensor = sensor or SimulatedSensor().read
        self.allow = allow
        self.handlers: dict[str, Handler] = {}
        self.state: dict[str, Any] = {"led": False}
        self.room: Room | None = None
        self.commands_run = 0
        self.register("ping", lambda args: "pong")
        self.register("set_led", self._set_led)
        self.register("get_state", lambda args: dict(self.state))

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    def _set_led(self, args: dict[str, Any]) -> dict[str, Any]:
        self.state["led"] = bool(args.get("on"))
        return dict(self.state)

    async def _on_control(self, sender: str, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            request_id, name = request["id"], str(request["command"])
            args = request.get("args") or {}
        except (ValueError, KeyError, TypeError):
            return
        ack: dict[str, Any] = {"id": request_id}
        if self.allow is not None and sender not in self.allow:
            ack.update(ok=False, error=f"{sender} may not command this device")
        elif name not in self.handlers:
            ack.update(ok=False, error=f"unknown command {name[:64]!r}")
        else:
            try:
                result = self.handlers[name](args if isinstance(args, dict) else {})
                if asyncio.iscoroutine(result):
                    result = await result
                ack.update(ok=True, result=result)
                self.commands_run += 1
            except Exception as exc:  # a failing handler answers with its error, the agent goes on
                ack.update(ok=False, error=str(exc))
        if self.room is not None:
            self.room.send_data(json.dumps(ack), topic="control-ack", to=[sender])

    async def run(self, duration: float | None = None) -> None:
        room = self.room = await connect(self.url, self.token)
        tasks: list[asyncio.Task[Any]] = []

        def on_data(header: dict[str, Any], payload: bytes) -> None:
            if header.get("t") == "control":
                tasks.append(asyncio.get_running_loop().create_task(self._on_control(str(header.get("f")), payload)))

        await room.connect_data(on_data)
        if self.source:
            tasks.append(asyncio.create_task(stream_ffmpeg(await room.publish(["video"]), self.source)))
        elif self.video and self.video.lower().endswith((".h264", ".264")):
            publication = await room.publish(["video"], video_codec="h264")
            tasks.append(asyncio.create_task(stream_h264(publication, self.video)))
        elif self.video:
            tasks.append(asyncio.create_task(stream_ivf(await room.publish(["video"]), self.video)))
        started = time.monotonic()
        try:
            while duration is None or time.monotonic() - started < duration:
                reading = {"ts": time.time(), **self.sensor()}
                room.send_data(json.dumps(reading), topic="telemetry", reliable=False)
                await asyncio.sleep(self.interval)  # the telemetry period
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await room.close()


def iot_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="roomcast iot", description="run an IoT device agent")
    p.add_argument("--url", default="http://127.0.0.1:7880")
    p.add_argument("--token", required=True, help="the device's access token (roomcast token --identity device ...)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--video",
        help="VP8 IVF file (ffmpeg -c:v libvpx ... out.ivf) or H.264 Annex-B file (.h264, ffmpeg -c:v libx264 -f h264)"
        " to stream in a loop",
    )
    source.add_argument("--camera", help="V4L2 device (e.g. /dev/video0), encoded to VP8 by ffmpeg")
    source.add_argument("--ffmpeg-input", help="any ffmpeg input, e.g. '-f lavfi -i testsrc=size=640x360:rate=15'")
    p.add_argument("--telemetry-interval", type=float, default=1.0)
    p.add_argument("--allow", help="comma-separated identities allowed to send commands (default: any operator)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    args = p.parse_args(argv)
    allow = {a.strip() for a in args.allow.split(",")} if args.allow else None
    live = (
        ["-f", "v4l2", "-i", args.camera] if args.camera else (args.ffmpeg_input.split() if args.ffmpeg_input else None)
    )
    agent = IotAgent(
        args.url, args.token, video=args.video, source=live, telemetry_interval=args.telemetry_interval, allow=allow
    )
    try:
        asyncio.run(agent.run(args.duration))
    except (RoomcastError, OSError) as exc:
        print(f"roomcast iot: {exc}")
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
