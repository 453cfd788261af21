"""IoT: the Python device agent and the Chromium dashboard: video, live telemetry, commands with acks, ACL."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest

from roomcast.tools.iot import IotAgent
from tests.e2e.test_sfu import decoding_tracks
from tests.signaling.wsclient import dev_token
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iot") / "camera.ivf"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=15",
            "-t",
            "2",
            "-c:v",
            "libvpx",
            "-b:v",
            "300k",
            "-g",
            "15",
            str(path),
        ],
        check=True,
    )
    return path


async def test_dashboard_sees_video_and_telemetry_and_commands_the_device(
    server: ServerProcess, new_page: NewPage, camera_file: Path, artifacts: Path
) -> None:
    room = "iot-" + uuid.uuid4().hex[:6]
    agent = IotAgent(server.ws_base, dev_token(room, "device"), video=str(camera_file), telemetry_interval=0.2)
    running = asyncio.create_task(agent.run())
    try:
        operator = await new_page(f"{server.base}/iot?room={room}&token={dev_token(room, 'operator', room_admin=True)}")
        await operator.wait_for_function("window.iotState && window.iotState.joined")
        assert max(await decoding_tracks(operator, 1, timeout=20)) > 0
        await operator.wait_for_function("window.iotState.readings.length >= 5", timeout=15_000)
        temperatures = await operator.evaluate("window.iotState.readings.map(r => r.temperature)")
        assert len(set(temperatures)) > 1  # live values, not a constant
        await operator.click("text=LED on")
        await operator.wait_for_function("window.iotState.acks[1]", timeout=10_000)
        assert await operator.evaluate("window.iotState.acks[1]") == {"id": 1, "ok": True, "result": {"led": True}}
        assert agent.state["led"] is True
        assert "→" in await operator.inner_text("#ack-1")
        await operator.screenshot(path=str(artifacts / "iot-dashboard.png"))  # docs/images/iot-dashboard.png

        viewer = await new_page(f"{server.base}/iot?room={room}&token={dev_token(room, 'viewer')}")
        await viewer.wait_for_function("window.iotState && window.iotState.joined")
        before = agent.commands_run
        await viewer.click("text=LED off")
        await viewer.wait_for_function("window.iotState.errors.includes('permission_denied')", timeout=10_000)
        assert agent.commands_run == before and agent.state["led"] is True  # refused by the server
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_cli_agent_with_a_live_ffmpeg_camera(server: ServerProcess, new_page: NewPage) -> None:
    """``roomcast iot`` as a user runs it, with a live source (ffmpeg's test pattern instead of /dev/video0)."""
    import sys

    room = "iot-cli-" + uuid.uuid4().hex[:6]
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roomcast",
        "iot",
        "--url",
        server.base,
        "--token",
        dev_token(room, "device"),
        "--ffmpeg-input",
        "-re -f lavfi -i testsrc=size=320x240:rate=15",
        "--telemetry-interval",
        "0.3",
        "--duration",
        "30",
    )
    try:
        operator = await new_page(f"{server.base}/iot?room={room}&token={dev_token(room, 'ops', room_admin=True)}")
        await operator.wait_for_function("window.iotState && window.iotState.joined")
        assert max(await decoding_tracks(operator, 1, timeout=25)) > 0
        await operator.wait_for_function("window.iotState.readings.length >= 2", timeout=15_000)
        await operator.click("text=Ping")
        await operator.wait_for_function("window.iotState.acks[1] && window.iotState.acks[1].result === 'pong'")
    finally:
        agent.terminate()
        await agent.wait()
