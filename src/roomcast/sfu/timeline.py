"""Where a simulcast subscriber's timestamps continue when its consumer switches layers."""

from __future__ import annotations

from roomcast.sfu.producer import Layer


def continued_timestamp(
    old: Layer | None, new: Layer, ts: int, last_out: int, ts_offset: int, clock: int, elapsed: float
) -> int:
    """Output timestamp for ``new``'s packet with timestamp ``ts``, the first after a switch from ``old``:
    its capture time on the old layer's timeline through both sender reports (RFC 3550 §6.4.1), else
    ``elapsed`` (wall time since the last packet sent, ``last_out``) after it; always after ``last_out``.
    ``ts_offset`` is the old layer's offset onto the output timeline."""
    out = -1
    if old is not None and old.sr_ntp and new.sr_ntp:
        captured = new.sr_ntp / 2**32 + _signed32(ts - new.sr_rtp) / clock
        old_ts = old.sr_rtp + round((captured - old.sr_ntp / 2**32) * clock)
        out = (old_ts + ts_offset) & 0xFFFFFFFF
        ahead = (out - last_out) & 0xFFFFFFFF
        if ahead >= 0x80000000 or ahead > 10 * clock:
            out = -1  # behind the last packet, or implausibly far: fall back
    if out < 0:
        out = (last_out + max(1, int(elapsed * clock))) & 0xFFFFFFFF
    elif out == last_out:
        out = (last_out + 1) & 0xFFFFFFFF
    return out


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value
