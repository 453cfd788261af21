"""An independent WHIP client: PyAV's bundled FFmpeg 8 ``whip`` muxer (H.264 + Opus), run as a subprocess.

``python -m tests.whip.ffmpeg_whip URL TOKEN SECONDS`` encodes a lavfi test pattern (libx264, baseline, no
B-frames) and a sine tone (libopus) in real time and muxes them to ``whip``; FFmpeg does the offer, the
ICE checks, DTLS and SRTP itself. Exit status 0 when it published for ``SECONDS``.
"""

from __future__ import annotations

import datetime
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def p256_identity(directory: Path) -> dict[str, str]:
    """A P-256 certificate for FFmpeg's DTLS: the bundled GnuTLS build generates secp224r1 keys, which OpenSSL
    refuses ("wrong curve"; RFC 8827 §6.5 makes P-256 the curve every endpoint supports)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ffmpeg-whip")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    key_pem = key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    (directory / "key.pem").write_bytes(key_pem)
    return {"cert_file": str(directory / "cert.pem"), "key_file": str(directory / "key.pem")}


def publish(url: str, token: str, seconds: float, extra: dict[str, str] | None = None) -> None:
    extra = extra or {}
    identity = p256_identity(Path(tempfile.mkdtemp(prefix="whip-")))
    video_in = av.open("testsrc2=size=640x360:rate=30", format="lavfi")
    audio_in = av.open("sine=frequency=440:sample_rate=48000", format="lavfi")
    options = {"authorization": token, "handshake_timeout": "10000", **identity, **extra}
    out = av.open(url, "w", format="whip", options=options)
    video = out.add_stream("libx264", rate=30)
    video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
    video.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": "30", "bf": "0"}
    video.bit_rate = 800_000
    audio = out.add_stream("libopus", rate=48000)
    audio.layout = "stereo"
    video_frames = video_in.decode(video=0)
    audio_frames = audio_in.decode(audio=0)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    start = time.monotonic()
    sent = 0
    audio_pts = 0
    while time.monotonic() - start < seconds:
        frame = next(video_frames)
        frame.pts, frame.time_base = sent, Fraction(1, 30)
        for packet in video.encode(frame):
            out.mux(packet)
        while audio_pts < (sent + 1) * 1600:  # 48000 / 30 samples per video frame
            for resampled in resampler.resample(next(audio_frames)):
                resampled.pts, resampled.time_base = audio_pts, Fraction(1, 48000)
                audio_pts += resampled.samples
                for packet in audio.encode(resampled):
                    out.mux(packet)
        sent += 1
        delay = start + sent / 30 - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # real time: a live encoder, not a file dumped at once
    out.close()


if __name__ == "__main__":
    publish(sys.argv[1], sys.argv[2], float(sys.argv[3]), dict(a.split("=", 1) for a in sys.argv[4:]))
