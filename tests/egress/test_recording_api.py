"""The recordings API without a browser: refusals, a recording's life with the room's (an Opus-only
participant into Ogg; the room empties, the recording ends and the room goes), and a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomcast.sdk import connect, stream_ogg
from tests.egress.conftest import (
    AUTH,
    api,
    decode_errors,
    ffprobe,
    start_recording,
    stop_recording,
    wait_recording,
)
from tests.signaling.wsclient import dev_token
from tests.support.server import ServerProcess, free_port
from tests.webhooks.test_webhooks import Receiver, verify
from tests.whip.conftest import ffmpeg_publisher, mint


def test_refusals(recording_server: ServerProcess, server: ServerProcess) -> None:
    room = "rec-api-" + uuid.uuid4().hex[:6]
    assert api(recording_server, "POST", f"{room}/recordings").json()["error"]["code"] == "room_not_found"
    assert api(recording_server, "POST", f"{room}/recordings").status_code == 404
    assert api(recording_server, "GET", f"{room}/recordings").status_code == 404
    created = httpx.post(f"{recording_server.base}/api/rooms", json={"name": room}, auth=AUTH)
    assert created.status_code == 201, created.text
    for method in ("GET", "DELETE"):
        res = api(recording_server, method, f"{room}/recordings/RC_nope")
        assert (res.status_code, res.json()["error"]["code"]) == (404, "recording_not_found"), res.text
    res = api(recording_server, "POST", f"{room}/recordings", auth=None)
    assert (res.status_code, res.json()["error"]["code"]) == (401, "missing_credentials")
    res = api(recording_server, "POST", f"{room}/recordings", auth=("devkey", "wrong"))
    assert (res.status_code, res.json()["error"]["code"]) == (401, "invalid_credentials")
    other = mint(recording_server, "another-room", "admin", room_admin=True)
    res = api(recording_server, "POST", f"{room}/recordings", auth=None, headers={"authorization": f"Bearer {other}"})
    assert (res.status_code, res.json()["error"]["code"]) == (403, "permission_denied")
    assert api(recording_server, "GET", f"{room}/recordings").json() == {"recordings": []}
    # an admin token of this room may record it; a room without publishers gives a recording without files
    admin = mint(recording_server, room, "admin", room_admin=True)
    bearer = {"authorization": f"Bearer {admin}"}
    started = api(recording_server, "POST", f"{room}/recordings", auth=None, headers=bearer)
    assert started.status_code == 201, started.text
    rec_id = started.json()["id"]
    listed = api(recording_server, "GET", f"{room}/recordings").json()["recordings"]
    assert [(r["id"], r["state"]) for r in listed] == [(rec_id, "recording")]
    info = stop_recording(recording_server, room, rec_id)
    assert (info["path"], info["files"], info["size"]) == (None, [], 0)
    assert stop_recording(recording_server, room, rec_id) == info  # stopping again answers the same
    # a server started without --recordings-dir
    res = httpx.post(f"{server.base}/api/rooms", json={"name": room}, auth=AUTH)
    res = httpx.post(f"{server.base}/api/rooms/{room}/recordings", auth=AUTH)
    assert (res.status_code, res.json()["error"]["code"]) == (409, "recordings_disabled")


@pytest.fixture(scope="module")
def opus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "tone.ogg"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=3",
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
            "-frame_duration",
            "20",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture
def hooked_server(artifacts: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, Receiver]]:
    receiver = Receiver(free_port())
    receiver.start()
    server = ServerProcess(
        artifacts, args=["--recordings-dir", str(tmp_path), "--webhook-url", f"http://127.0.0.1:{receiver.port}/hook"]
    )
    yield server, receiver
    assert server.stop() == 0, server.log()[-3000:]
    receiver.stop()


async def test_audio_only_participant_to_ogg_and_the_room_empties(
    hooked_server: tuple[ServerProcess, Receiver], opus_file: Path
) -> None:
    server, receiver = hooked_server
    room = "rec-ogg-" + uuid.uuid4().hex[:6]
    speaker = await connect(server.ws_base, dev_token(room, "speaker"))
    publication = await speaker.publish(["audio"])
    streaming = asyncio.create_task(stream_ogg(publication, str(opus_file)))
    try:
        rec_id = await asyncio.to_thread(start_recording, server, room)
        await asyncio.to_thread(wait_recording, server, room, rec_id)
        await asyncio.sleep(4)  # the length of the recording
    finally:
        streaming.cancel()
        await speaker.close()
    deadline = time.monotonic() + 15
    while (info := api(server, "GET", f"{room}/recordings/{rec_id}").json())["state"] != "finished":
        assert time.monotonic() < deadline, f"the recording outlived its room: {info}"
        await asyncio.sleep(0.1)  # polling the API with a deadline
    assert info["reason"] == "room_empty", info
    path = info["path"]
    assert path.endswith(".ogg"), info
    probe = ffprobe(path)
    assert [s["codec_name"] for s in probe["streams"]] == ["opus"]
    assert 3.0 < float(probe["format"]["duration"]) < 6.0, probe["format"]
    assert decode_errors(path) == ""
    # the hidden recorders left with the last participant: the room is gone, its recordings still listed
    deadline = time.monotonic() + 10
    while api(server, "GET", room).status_code != 404:
        assert time.monotonic() < deadline, "the recorders kept the empty room alive"
        await asyncio.sleep(0.1)
    assert [r["id"] for r in api(server, "GET", f"{room}/recordings").json()["recordings"]] == [rec_id]
    # the webhooks, signed, in order, the finished one with the file's path
    events = await asyncio.to_thread(
        receiver.wait_for, lambda evs: any(e["event"] == "recording_finished" for e in evs)
    )
    mine = [e for e in events if e["event"].startswith("recording_")]
    assert [e["event"] for e in mine] == ["recording_started", "recording_finished"], mine
    assert {e["recording"]["id"] for e in mine} == {rec_id}
    assert mine[1]["recording"]["path"] == path and mine[1]["room"] == {"name": room}
    with receiver.lock:
        for _, headers, body in receiver.received:
            verify(headers["authorization"], body)


def test_full_disk_stops_the_recording_not_the_room(artifacts: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 300 kB fail (EFBIG) as a full disk would: the recording fails with
    ``recording_write_failed``, and a viewer of the same room keeps receiving the publisher's frames."""
    server = ServerProcess(artifacts, args=["--recordings-dir", str(tmp_path)], fsize=300_000)
    room = "rec-full-" + uuid.uuid4().hex[:6]
    publisher = ffmpeg_publisher(server, room, mint(server, room, "encoder"), 16, artifacts / f"{room}-ffmpeg.log")
    try:
        asyncio.run(_full_disk(server, room))
    finally:
        publisher.wait(40)
        code = server.stop()
    assert code == 0, server.log()[-3000:]
    assert "Traceback" not in server.log()


async def _full_disk(server: ServerProcess, room: str) -> None:
    viewer = await connect(server.ws_base, dev_token(room, "viewer", can_publish=False))
    frames: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while len(viewer.tracks) < 2:
            assert time.monotonic() < deadline, "no WHIP tracks"
            await asyncio.sleep(0.05)
        await viewer.subscribe(on_frame=lambda f: frames.append(f.timestamp) if f.codec == "h264" else None)
        rec_id = await asyncio.to_thread(start_recording, server, room)
        deadline = time.monotonic() + 30
        while (info := api(server, "GET", f"{room}/recordings/{rec_id}").json())["state"] != "failed":
            assert info["state"] == "recording", info
            assert time.monotonic() < deadline, f"the recording never hit the limit: {info}"
            await asyncio.sleep(0.1)
        assert "File too large" in info["error"], info
        assert info["files"][0]["state"] == "failed", info
        before = len(frames)
        deadline = time.monotonic() + 10
        while len(frames) < before + 30:  # one more second of video after the failure
            assert time.monotonic() < deadline, "the room stopped forwarding when the recording failed"
            await asyncio.sleep(0.05)
        assert api(server, "GET", room).json()["num_participants"] == 2  # publisher and viewer; recorders left
        print("full disk:", info["error"], info["files"][0]["size"], "bytes")
    finally:
        await viewer.close()


async def test_room_option_record_true(recording_server: ServerProcess, server: ServerProcess, opus_file: Path) -> None:
    """``record: true`` at creation: the first publisher is recorded without a POST; refused without a directory."""
    room = "rec-auto-" + uuid.uuid4().hex[:6]
    refused = httpx.post(f"{server.base}/api/rooms", json={"name": room, "record": True}, auth=AUTH)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "recordings_disabled")
    created = httpx.post(f"{recording_server.base}/api/rooms", json={"name": room, "record": True}, auth=AUTH)
    assert created.status_code == 201 and created.json()["record"] is True, created.text
    assert api(recording_server, "GET", f"{room}/recordings").json() == {"recordings": []}  # nobody publishes yet
    speaker = await connect(recording_server.ws_base, dev_token(room, "speaker"))
    publication = await speaker.publish(["audio"])
    streaming = asyncio.create_task(stream_ogg(publication, str(opus_file)))
    try:
        deadline = time.monotonic() + 20
        while True:
            recs = api(recording_server, "GET", f"{room}/recordings").json()["recordings"]
            if any(f["state"] == "recording" for r in recs for f in r["files"]):
                break
            assert time.monotonic() < deadline, f"record: true never recorded: {recs}"
            await asyncio.sleep(0.1)  # polling the API with a deadline
        assert len(recs) == 1, recs
        info = await asyncio.to_thread(stop_recording, recording_server, room, recs[0]["id"])
    finally:
        streaming.cancel()
        await speaker.close()
    assert info["path"].endswith("-speaker.ogg") and info["size"] > 0, info
    assert decode_errors(info["path"]) == ""


async def test_sigterm_finishes_the_files(artifacts: Path, tmp_path: Path, opus_file: Path) -> None:
    """A server stopped (SIGTERM) while it records finishes the recording (logged), exits 0 without a traceback,
    and leaves a file that decodes."""
    server = ServerProcess(artifacts, args=["--recordings-dir", str(tmp_path)])
    room = "rec-term-" + uuid.uuid4().hex[:6]
    speaker = await connect(server.ws_base, dev_token(room, "speaker"))
    publication = await speaker.publish(["audio"])
    streaming = asyncio.create_task(stream_ogg(publication, str(opus_file)))
    try:
        rec_id = await asyncio.to_thread(start_recording, server, room)
        info = await asyncio.to_thread(wait_recording, server, room, rec_id)
        await asyncio.sleep(2)  # some recording
        code = await asyncio.to_thread(server.stop)
    finally:
        streaming.cancel()
        with contextlib.suppress(Exception):
            await speaker.close()
    assert code == 0, server.log()[-3000:]
    assert "Traceback" not in server.log(), server.log()[-5000:]
    assert f"recording {rec_id} of {room} finished" in server.log(), server.log()[-3000:]
    path = info["files"][0]["path"]
    assert decode_errors(path) == ""
    assert float(ffprobe(path)["format"]["duration"]) > 1.5
