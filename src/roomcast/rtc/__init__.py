"""The media service between the room model and the SFU (LiveKit's ``pkg/rtc`` role).

``api`` is what adapters (the JSON signaling session today; WHIP, LiveKit, SIP later) see: offers to server
endpoints in, answers or typed :class:`~roomcast.rtc.api.MediaError` out. ``service`` implements it on one
UDP endpoint: offers become transports (ICE restart included), per-room routers, publish limits, and the
close cascade when a participant goes. It obeys commands; the rooms' business rules stay in the adapters.
"""
