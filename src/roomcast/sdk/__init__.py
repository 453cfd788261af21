"""Python client SDK (no decoding): ``room = await roomcast.sdk.connect(url, token)``."""

from roomcast.sdk.client import MediaConnection, Publication, Room, RoomcastError, connect, stream_ffmpeg, stream_ivf
from roomcast.sdk.frames import Frame, FrameAssembler
from roomcast.sdk.streams import stream_h264, stream_ogg

__all__ = [
    "Frame",
    "FrameAssembler",
    "MediaConnection",
    "Publication",
    "Room",
    "RoomcastError",
    "connect",
    "stream_ffmpeg",
    "stream_h264",
    "stream_ivf",
    "stream_ogg",
]
