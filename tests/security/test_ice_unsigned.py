"""Issue 12 M1 against a real server: unsigned role-conflict checks, then DTLS from the attacker's port.

The victim is a real Chromium echo call. Its answer is held back until the attack has begun, so the
server's transport is waiting for its first check when the forged datagrams arrive, and the attack goes
on through the victim's ICE, DTLS handshake and media. The attacker knows what an eavesdropper on the
signaling would (both ufrags, never the password) and sends from its own address (127.0.0.2), so the
per-IP STUN budget it spends is its own.
"""

from __future__ import annotations

import re
import socket
import threading
import uuid

import pytest

from tests.e2e.test_call import FRAMES_DECODED, wait_stat
from tests.security.test_media_garbage import metric
from tests.support.browser_fixtures import NewPage
from tests.support.server import ServerProcess
from tests.support.stun_attack import FRESH_SEQ, dtls_change_cipher_spec, dtls_fatal_alert, unsigned_role_conflict

pytestmark = pytest.mark.browser

# The echo peer's setRemoteDescription(answer) (the one with video; the page's $data peer goes on) waits
# for window.__held.release(): its SDP is readable before its ICE starts.
# It also records that peer's ICE states and how many answers it took (an ICE restart is a second one).
HOLD_ANSWER = """(() => {
  const held = {offer: null, answer: null, release: null, pc: null, answers: 0, states: []};
  window.__held = held;
  const original = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = async function (description) {
    const video = description && description.type === 'answer' && description.sdp.includes('m=video');
    if (video && held.pc === null) {
      held.pc = this;
      held.offer = this.localDescription.sdp;
      held.answer = description.sdp;
      this.addEventListener('iceconnectionstatechange', () => held.states.push(this.iceConnectionState));
      await new Promise((resolve) => { held.release = resolve; });
    }
    if (this === held.pc && description.type === 'answer') held.answers += 1;
    return original.call(this, description);
  };
})();"""

DROPS = ("ice_bad_integrity", "socket_stun_rate_limited", "socket_unknown_address")


class Attacker(threading.Thread):
    """Bursts of unsigned role conflicts, a fatal alert and CCS records every ``pace`` seconds, from one
    port; records every datagram that comes back."""

    def __init__(self, ufrags: str, target: tuple[str, int], pace: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.ufrags, self.target, self.pace = ufrags, target, pace
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.received: list[bytes] = []
        self.sent = 0
        self._done = threading.Event()
        self._seq = FRESH_SEQ

    def burst(self, checks: int, ccs: int) -> None:
        datagrams = [unsigned_role_conflict(self.ufrags) for _ in range(checks)]
        datagrams.append(dtls_fatal_alert(self._seq))
        datagrams += [dtls_change_cipher_spec(self._seq + 1 + n) for n in range(ccs)]
        self._seq += 1 + ccs
        for data in datagrams:
            self.sock.sendto(data, self.target)
        self.sent += len(datagrams)

    def run(self) -> None:
        self.sock.settimeout(self.pace)  # the pace of the bursts, and how long we listen in between
        while not self._done.is_set():
            self.burst(5, 5)
            try:
                while True:
                    self.received.append(self.sock.recvfrom(2048)[0])
            except TimeoutError:
                pass

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=5)
        self.sock.close()


async def test_unsigned_role_conflicts_and_dtls_from_another_port_leave_the_victim_call_alone(
    server: ServerProcess, new_page: NewPage
) -> None:
    page = await new_page("about:blank")
    await page.add_init_script(HOLD_ANSWER)
    await page.goto(f"{server.base}/echo?room=victim-{uuid.uuid4().hex[:6]}&identity=victim")
    await page.wait_for_function("window.__held && window.__held.release !== null", timeout=20_000)
    offer, answer = await page.evaluate("[window.__held.offer, window.__held.answer]")
    server_ufrag = re.search(r"a=ice-ufrag:(\S+)", answer).group(1)  # type: ignore[union-attr]
    client_ufrag = re.search(r"a=ice-ufrag:(\S+)", offer).group(1)  # type: ignore[union-attr]
    before = {reason: metric(server, "roomcast_media_dropped_total", reason) for reason in DROPS}

    attacker = Attacker(f"{server_ufrag}:{client_ufrag}", ("127.0.0.1", server.media_port))
    attacker.burst(200, 50)  # the attack, before the victim's first check
    attacker.start()  # and again every 20 ms through the victim's ICE, DTLS handshake and media
    try:
        await page.evaluate("window.__held.release()")
        frames = await wait_stat(page, FRAMES_DECODED, 30)
        assert await wait_stat(page, FRAMES_DECODED, frames + 60) >= frames + 60  # still decoding, 2 s on
    finally:
        attacker.finish()

    # the victim's first connection is the one that carried the frames: it never failed nor restarted
    answers, states = await page.evaluate("[window.__held.answers, window.__held.states]")
    assert (answers, "failed" in states, "connected" in states) == (1, False, True), states
    assert attacker.sent > 1000 and attacker.received == []  # not one STUN response (nor anything else)
    drops = {reason: metric(server, "roomcast_media_dropped_total", reason) - before[reason] for reason in DROPS}
    # lower bounds: the kernel may drop some of a burst before the server reads it
    assert drops["ice_bad_integrity"] >= 50  # checked and discarded...
    assert drops["socket_stun_rate_limited"] >= 50  # ...until the attacker's budget ran out: no refunds
    assert drops["socket_unknown_address"] >= 51  # the alert and CCS never reached the victim's transport
    assert server.alive() and "Traceback" not in server.log()
