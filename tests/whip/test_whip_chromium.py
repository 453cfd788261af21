"""Chromium as a WHIP client with a plain RTCPeerConnection (no Roomcast SDK): it POSTs its offer, trickles
its candidates with PATCH (RFC 9725 §4.3.1), restarts ICE through PATCH (§4.3.2), and a second Chromium plays
the room through WHEP on ``/watch``: standard ingest to standard playback, decoded throughout."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess
from tests.whip.conftest import AUTH, mint
from tests.whip.test_whep_chromium import frames_past, video

pytestmark = pytest.mark.browser

PUBLISH = r"""async ({room, token}) => {
  const auth = {authorization: 'Bearer ' + token};
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});
  const state = window.whip = {pc, location: null, etag: null, patches: [], queued: [], answer: null};
  const ice = () => {
    const sdp = pc.localDescription.sdp, field = (name) => new RegExp('a=' + name + ':(.*)').exec(sdp)[1].trim();
    return 'a=ice-ufrag:' + field('ice-ufrag') + '\r\na=ice-pwd:' + field('ice-pwd');
  };
  state.patch = async (body, match) => {
    const res = await fetch(state.location, {method: 'PATCH', body,
      headers: {...auth, 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': match || state.etag}});
    state.patches.push(res.status);
    return res;
  };
  pc.onicecandidate = (event) => {
    const line = event.candidate ? 'a=' + event.candidate.candidate : 'a=end-of-candidates';
    const frag = ice() + '\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n' + line + '\r\n';
    if (state.location) state.patch(frag); else state.queued.push(frag);
  };
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch('/whip/' + room, {method: 'POST', body: pc.localDescription.sdp,
                                             headers: {...auth, 'content-type': 'application/sdp'}});
  if (res.status !== 201) return res.status;
  state.location = res.headers.get('location');
  state.etag = res.headers.get('etag');
  state.answer = await res.text();
  await pc.setRemoteDescription({type: 'answer', sdp: state.answer});
  for (const frag of state.queued) await state.patch(frag);
  return res.status;
}"""

RESTART = r"""async () => {
  const state = window.whip, pc = state.pc;
  pc.restartIce();
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription.sdp, field = (name) => new RegExp('a=' + name + ':(.*)').exec(sdp)[1].trim();
  const body = 'a=ice-ufrag:' + field('ice-ufrag') + '\r\na=ice-pwd:' + field('ice-pwd') + '\r\n';
  const res = await state.patch(body, '*');
  if (res.status !== 200) return {status: res.status};
  const frag = await res.text();
  state.etag = res.headers.get('etag');
  const ufrag = /a=ice-ufrag:(.*)/.exec(frag)[1].trim(), pwd = /a=ice-pwd:(.*)/.exec(frag)[1].trim();
  const answer = state.answer.replace(/a=ice-ufrag:.*\r\n/g, 'a=ice-ufrag:' + ufrag + '\r\n')
                             .replace(/a=ice-pwd:.*\r\n/g, 'a=ice-pwd:' + pwd + '\r\n');
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  return {status: res.status, ufrag, changed: !state.answer.includes('a=ice-ufrag:' + ufrag)};
}"""


async def test_chromium_publishes_over_whip_with_trickle_and_ice_restart(
    server: ServerProcess, new_page: NewPage
) -> None:
    room = "cwhip-" + uuid.uuid4().hex[:6]
    publisher = await new_page(f"{server.base}/")
    status = await publisher.evaluate(PUBLISH, {"room": room, "token": mint(server, room, "browser-encoder")})
    assert status == 201
    await publisher.wait_for_function("window.whip.pc.connectionState === 'connected'", timeout=20000)
    await publisher.wait_for_function("window.whip.patches.length >= 2", timeout=10000)  # a candidate, the end
    assert set(await publisher.evaluate("window.whip.patches")) == {204}
    watch = await new_page(f"{server.base}/watch?room={room}")
    first = await frames_past(watch, 30)

    restart = await publisher.evaluate(RESTART)
    assert restart["status"] == 200 and restart["changed"], restart
    await publisher.wait_for_function("window.whip.pc.connectionState === 'connected'", timeout=20000)
    for _ in range(50):
        stats = httpx.get(f"{server.base}/metrics").text
        completed = [line for line in stats.splitlines() if 'event="ice_restarts_completed"' in line]
        if completed and float(completed[0].split()[-1]) >= 1:
            break
        await asyncio.sleep(0.2)
    assert completed and float(completed[0].split()[-1]) >= 1, completed
    after = await frames_past(watch, (await video(watch))["frames"] + 30, timeout=20)
    assert after["ssrc"] == first["ssrc"]
    tracks = httpx.get(f"{server.base}/api/rooms/{room}/stats", auth=AUTH).json()["tracks"]
    assert sorted(t["kind"] for t in tracks if t["participant"] == "browser-encoder") == ["audio", "video"]
    print(f"chromium whip (trickle, ICE restart) -> whep: {first['fps']} fps, {after['frames']} frames")
