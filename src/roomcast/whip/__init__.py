"""WHIP (RFC 9725) and WHEP: the HTTP ingest and playback adapter over the same room model and media service.

A WHIP or WHEP session is a normal participant of its room (joined through :class:`~roomcast.rooms.manager.
RoomManager` with the bearer's token, its offer handed to :class:`~roomcast.rtc.api.MediaBackend`); its HTTP
resource lives as long as that participant. ``service.py`` is the protocol without HTTP, ``http.py`` the
starlette endpoints, ``sdpfrag.py`` the RFC 8840 fragments of PATCH.
"""
