"""Roomcast: a real-time audio/video/data server for the web."""

__version__ = "0.1.0"
