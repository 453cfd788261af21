"""What a subscriber asked for a simulcast track (adaptive stream: quality, shown size, hidden), turned into
a spatial layer. Layers are ranked lowest resolution first; each is taken to be half as tall as the one above
(the JS SDK's ``q``/``h``/``f`` at 1/4, 1/2 and full size), so a capture height gives every layer's height."""

from __future__ import annotations

from roomcast.rtc.api import TrackSettings

QUALITY_SPATIAL = {"low": 0, "medium": 1, "high": 99}


def wanted_layer(settings: TrackSettings, layers: int, capture_height: int | None) -> int:
    """The spatial layer to forward: by ``quality``, else the smallest layer at least as tall as the element
    that shows it (when the capture height is known), else the top one."""
    top = max(layers - 1, 0)
    if settings.quality is not None:
        return min(QUALITY_SPATIAL.get(settings.quality, top), top)
    if settings.height and capture_height:
        for index in range(layers):
            if capture_height / 2 ** (top - index) >= settings.height:
                return index
    return top
