"""A GStreamer webrtcbin peer, run by Debian's ``/usr/bin/python3`` (the only Python with ``gi`` + Gst).

It speaks JSON lines: on stdout ``{"type": "offer", "sdp"}``, ``{"type": "stats", ...}`` (once a
second) and ``{"type": "error", "message"}``; on stdin ``{"type": "answer", "sdp"}`` and
``{"type": "stop"}``. The test process relays offer and answer to Roomcast's signaling, so this file
needs nothing but GStreamer (no WebSocket library in Debian's Python).

``publish`` sends a live test pattern (VP8 or H.264 from x264enc, constrained baseline) and/or a sine
tone (Opus), and reports the frames out of its encoder; ``--early-offer`` creates the offer in READY,
before any caps exist (H.264 is then offered without fmtp: packetization-mode 0), otherwise the offer
waits for the caps. ``subscribe`` offers recvonly VP8 (or H.264 with ``--video h264``) and Opus, decodes
what arrives and reports frames decoded, freezes and the audio level.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = {
    "vp8": "vp8enc deadline=1 cpu-used=8 keyframe-max-dist=60 target-bitrate=800000 ! {tap} ! rtpvp8pay pt=96 "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96",
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1000 "
    "! video/x-h264,profile=constrained-baseline ! {tap} "
    "! rtph264pay pt=96 config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=96",
}
RECEIVE = {  # what a subscriber offers (recvonly)
    "vp8": "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,rtcp-fb-nack-pli=true",
    "h264": "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,rtcp-fb-nack-pli=true,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f,level-asymmetry-allowed=(string)1",
}
TAP = "identity name=encoded signal-handoffs=true"  # every encoded frame passes here: the source's own rate
OPUS = "opusenc ! rtpopuspay pt=97 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=97"


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def structure_dict(s: Gst.Structure) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        value = s.get_value(name)
        if hasattr(value, "value_nick"):  # a GEnum such as GstWebRTCStatsType
            out[name] = value.value_nick
        elif isinstance(value, int | float | str | bool):
            out[name] = value
    return out


class FreezeMeter:
    """Frames, and freezes as Chromium's ``totalFreezesDuration`` counts them (webrtc-stats): a gap
    longer than max(3 x mean, mean + 150 ms) of the last 30 gaps (tests/support/quality.py has the same)."""

    def __init__(self) -> None:
        self.frames = 0
        self.total = 0.0
        self.last = 0.0
        self.gaps: deque[float] = deque(maxlen=30)

    def frame(self, now: float) -> None:
        if self.last:
            gap = now - self.last
            if len(self.gaps) == self.gaps.maxlen:
                mean = sum(self.gaps) / len(self.gaps)
                if gap > max(3 * mean, mean + 0.150):
                    self.total += gap
            self.gaps.append(gap)
        self.last = now
        self.frames += 1


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.decoded = FreezeMeter()  # subscribe: frames out of the decoder
        self.encoded = FreezeMeter()  # publish: frames out of the encoder
        self.audio_buffers = 0
        self.peak_db = -200.0
        self.second_peak_db = -200.0  # since the last report
        self.offered = False
        if args.mode == "publish":
            parts = ["webrtcbin name=webrtc bundle-policy=max-bundle latency=200"]
            if args.video:
                parts.append(
                    f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},height={args.height},"
                    f"framerate={args.fps}/1 ! videoconvert ! queue ! {VIDEO[args.video].format(tap=TAP)} ! webrtc."
                )
            if args.audio:
                parts.append(
                    f"audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! {OPUS} ! webrtc."
                )
            if args.unsupported_last:  # an m-line Roomcast rejects (L16), after the others
                parts.append(
                    "audiotestsrc is-live=true ! audioconvert ! audio/x-raw,rate=16000,channels=1 ! rtpL16pay pt=98 "
                    "! application/x-rtp,media=audio,encoding-name=L16,payload=98 ! webrtc."
                )
            self.pipe = Gst.parse_launch(" ".join(parts))
        else:
            self.pipe = Gst.Pipeline.new("subscriber")
            webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
            webrtc.set_property("latency", 200)
            webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipe.add(webrtc)
        self.webrtc = self.pipe.get_by_name("webrtc")
        tap = self.pipe.get_by_name("encoded")
        if tap is not None:
            tap.connect("handoff", lambda *_: self.encoded.frame(time.monotonic()))
        if args.mode == "subscribe":
            recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
            video = RECEIVE[args.video or "vp8"]
            audio = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"
            self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(video))
            self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(audio))
            self.webrtc.connect("pad-added", self.on_pad_added)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)
        GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, self.on_stdin)
        GLib.timeout_add(1000, self.report)

    # ------------------------------------------------------------------ negotiation

    def on_negotiation_needed(self, _element: Gst.Element) -> None:
        if self.args.early_offer:
            return  # offered from run(), before any caps
        if self.args.mode == "publish":
            GLib.timeout_add(50, self.offer_when_caps_known)
        else:
            self.create_offer()

    def offer_when_caps_known(self) -> bool:
        pads = [p for p in self.webrtc.sinkpads if p.get_name().startswith("sink_")]
        if pads and all(p.get_current_caps() is not None for p in pads):
            self.create_offer()
            return False
        return True

    def create_offer(self) -> None:
        if self.offered:
            return
        self.offered = True
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            emit({"type": "error", "message": f"create-offer failed: {reply.to_string() if reply else None}"})
            self.loop.quit()
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        emit({"type": "offer", "sdp": offer.sdp.as_text()})
        if self.args.early_offer:
            GLib.idle_add(lambda: self.pipe.set_state(Gst.State.PLAYING) and False)

    def on_stdin(self, _fd: int, condition: int) -> bool:
        line = sys.stdin.readline()
        if not line:
            self.loop.quit()
            return False
        message = json.loads(line)
        if message["type"] == "answer":
            _, sdp = GstSdp.SDPMessage.new_from_text(message["sdp"])
            answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
            self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        elif message["type"] == "stop":
            self.loop.quit()
            return False
        return True

    # ------------------------------------------------------------------ receiving

    def on_pad_added(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _decode: Gst.Element, pad: Gst.Pad) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name()
        if name.startswith("video"):
            chain = "queue ! fakesink name=vsink sync=false signal-handoffs=true"
        elif name.startswith("audio"):
            chain = "queue ! audioconvert ! level post-messages=true interval=200000000 ! fakesink sync=false"
        else:
            return
        bin_ = Gst.parse_bin_from_description(chain, True)
        self.pipe.add(bin_)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))
        if name.startswith("video"):
            bin_.get_by_name("vsink").connect("handoff", self.on_frame)

    def on_frame(self, *_args: object) -> None:
        self.decoded.frame(time.monotonic())

    def on_message(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            emit({"type": "error", "message": f"{error.message} ({debug})"})
            self.loop.quit()
        elif message.type == Gst.MessageType.ELEMENT:
            s = message.get_structure()
            if s is not None and s.get_name() == "level":
                rms = s.get_value("rms")
                if rms:
                    self.peak_db = max(self.peak_db, max(rms))
                    self.second_peak_db = max(self.second_peak_db, max(rms))
                    self.audio_buffers += 1

    # ------------------------------------------------------------------ stats

    def report(self) -> bool:
        promise = Gst.Promise.new_with_change_func(self.on_stats, None)
        self.webrtc.emit("get-stats", None, promise)
        return True

    def on_stats(self, promise: Gst.Promise, _data: object) -> None:
        promise.wait()
        reply = promise.get_reply()
        stats: list[dict[str, Any]] = []
        if reply is not None:

            def each(_field_id: int, value: Any, _user: object) -> bool:
                if isinstance(value, Gst.Structure):
                    entry = structure_dict(value)
                    if entry.get("type") in (
                        "outbound-rtp",
                        "inbound-rtp",
                        "remote-inbound-rtp",
                        "remote-outbound-rtp",
                    ):
                        stats.append(entry)
                return True

            reply.foreach(each, None)
        emit(
            {
                "type": "stats",
                "t": time.monotonic(),
                "frames": self.decoded.frames,
                "freezes": self.decoded.total,
                "encoded_frames": self.encoded.frames,
                "encoded_freezes": self.encoded.total,
                "level_db": self.peak_db,
                "level_db_last": self.second_peak_db,
                "level_reports": self.audio_buffers,
                "rtp": stats,
            }
        )
        self.second_peak_db = -200.0

    def run(self) -> None:
        if self.args.early_offer:  # in READY no buffer has flowed: the offer sees the capsfilters only
            self.pipe.set_state(Gst.State.READY)
            self.create_offer()
        else:
            self.pipe.set_state(Gst.State.PLAYING)
        try:
            self.loop.run()
        finally:
            self.pipe.set_state(Gst.State.NULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "subscribe"])
    parser.add_argument("--video", choices=sorted(VIDEO))
    parser.add_argument("--audio", action="store_true")
    parser.add_argument("--early-offer", action="store_true")
    parser.add_argument("--unsupported-last", action="store_true")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    Gst.init(None)
    Peer(parser.parse_args()).run()


if __name__ == "__main__":
    main()
