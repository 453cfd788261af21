"""LiveKit's ``DataPacket`` on ``_reliable``/``_lossy``, as a framing of the room's data router
(sfu/datachannels.py): user packets (payload, topic, destination identities) become room data every client
receives, Roomcast's included; everything else LiveKit clients send one another (RPC, data streams, chat,
transcriptions) is forwarded to LiveKit clients only, with the sender's identity stamped by the server."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from livekit.protocol import models

from roomcast.wire.envelope import decode_envelope

_RELIABLE, _LOSSY = models.DataPacket.Kind.RELIABLE, models.DataPacket.Kind.LOSSY


class LiveKitFraming:
    reliable_label, lossy_label = "_reliable", "_lossy"
    idle_labels: tuple[str, ...] = ("_data_track",)  # livekit-client's data-track channel (not supported)
    takes_raw = True

    def decode(self, data: bytes) -> tuple[dict[str, Any], bytes]:
        packet = models.DataPacket()
        try:
            packet.ParseFromString(data)
        except DecodeError:
            raise ValueError("not a LiveKit DataPacket") from None
        kind = packet.WhichOneof("value")
        if kind == "user":
            user = packet.user
            to = list(user.destination_identities) or list(packet.destination_identities)
            header: dict[str, Any] = {"t": user.topic or None, "b": not _is_text(user.payload)}
            if to:
                header["to"] = to[:256]
            return header, user.payload
        if kind is None or kind == "encrypted_packet":
            raise ValueError(f"unsupported DataPacket {kind or 'without a value'}")
        raw: dict[str, Any] = {"t": None, "b": True, "raw": 1}
        if packet.destination_identities:
            raw["to"] = list(packet.destination_identities)[:256]
        return raw, data

    def transcode(self, envelope: bytes, reliable: bool) -> bytes:
        header, payload = decode_envelope(envelope)
        sender = str(header.get("f", ""))
        if header.get("raw"):
            packet = models.DataPacket()
            try:
                packet.ParseFromString(payload)
            except DecodeError:
                raise ValueError("not a LiveKit DataPacket") from None
            packet.participant_identity = sender  # never what the sender claimed
            packet.participant_sid = ""
            packet.ClearField("destination_identities")
            return packet.SerializeToString()
        topic = header.get("t")
        user = models.UserPacket(
            participant_identity=sender, payload=payload, topic=topic if isinstance(topic, str) else None
        )
        return models.DataPacket(
            kind=_RELIABLE if reliable else _LOSSY, participant_identity=sender, user=user
        ).SerializeToString()

    def refusal(self, code: str, message: str) -> bytes | None:
        return None  # LiveKit's data packets have no error; the refusal is counted on the server


def _is_text(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


LIVEKIT_FRAMING = LiveKitFraming()

__all__ = ["LIVEKIT_FRAMING", "LiveKitFraming"]
