"""The LiveKit signal protocol adapter: LiveKit's client SDKs join Roomcast rooms unchanged.

A sibling of ``signaling/`` over the same room model (``rooms/``) and media service (``rtc/``): protobuf
``SignalRequest``/``SignalResponse`` (the ``livekit-protocol`` package's generated messages) on ``/rtc/v1``,
one peer connection per participant (``$peer``). What is supported and what is not: ``docs/livekit.md``.
"""
