"""Python client SDK (no decoding): ``room = await roomcast.sdk.connect(url, token)``."""

from roomcast.sdk.client import MediaConnection, Publication, Room, RoomcastError, connect, stream_ffmpeg, stream_ivf

__all__ = ["MediaConnection", "Publication", "Room", "RoomcastError", "connect", "stream_ffmpeg", "stream_ivf"]
