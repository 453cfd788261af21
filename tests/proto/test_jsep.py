"""The JSEP answerer on real Chromium offers: the answer's structure, policy, and every refusal."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from roomcast.proto.codecs import TWCC_URI, CodecPolicy
from roomcast.proto.jsep import AnswerParams, Mode, NegotiatedAnswer, NegotiationError, SendTrack, create_answer
from roomcast.wire.sdp import MediaDescription, SessionDescription, parse

FIXTURES = Path(__file__).parents[1] / "wire" / "fixtures"
NAMES = ["audio_video", "audio_video_data", "data", "simulcast", "recvonly"]
TEXT = {name: (FIXTURES / f"sdp_{name}.sdp").read_bytes().decode() for name in NAMES}
FINGERPRINT = "AB:" * 31 + "CD"
SUPPORTED = {"opus", "pcmu", "pcma", "vp8", "vp9", "h264", "rtx"}
FEEDBACK = {"nack", "nack pli", "ccm fir", "goog-remb"}


def params(mode: Mode = "echo", seed: int = 1, **kw: Any) -> AnswerParams:
    return AnswerParams(
        "srvU", "server-password-0123456789", FINGERPRINT, [("127.0.0.1", 40000)], mode, rng=random.Random(seed), **kw
    )


def answer_for(name: str, mode: Mode = "echo", **kw: Any) -> NegotiatedAnswer:
    return create_answer(parse(TEXT[name]), params(mode, **kw))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["echo", "publish", "subscribe"])
def test_answer_structure(name: str, mode: Mode) -> None:
    offer = parse(TEXT[name])
    tracks = {m.mid or "": SendTrack("alice", f"t{m.mid}") for m in offer.media}
    negotiated = create_answer(offer, params(mode, send_tracks=tracks if mode == "subscribe" else {}))
    answer = negotiated.answer
    assert parse(answer.serialize()) == answer
    assert answer.ice_lite and answer.extmap_allow_mixed
    assert [m.mid for m in answer.media] == [m.mid for m in offer.media]
    accepted = [m for m in answer.media if m.port]
    assert answer.bundle_mids() == [m.mid for m in accepted] == list(negotiated.bundle_mids)
    assert negotiated.remote_ice_ufrag == offer.media[0].ice_ufrag
    assert negotiated.remote_ice_pwd == offer.media[0].ice_pwd
    assert list(negotiated.remote_fingerprints) == offer.media[0].fingerprints
    assert negotiated.dtls_role == "server"
    for i, m in enumerate(accepted):
        assert (m.ice_ufrag, m.ice_pwd, m.setup) == ("srvU", "server-password-0123456789", "passive")
        assert m.fingerprints == [("sha-256", FINGERPRINT)]
        assert m.port == 40000 and m.connection == "IN IP4 127.0.0.1"
        if i == 0:
            (cand,) = m.ice_candidates
            assert (cand.address, cand.port, cand.type, cand.transport) == ("127.0.0.1", 40000, "host", "udp")
            assert m.end_of_candidates
        else:
            assert not m.ice_candidates and not m.end_of_candidates
    for offered, m in zip(offer.media, answer.media, strict=True):
        if m.kind == "application":
            assert (m.sctp_port, m.max_message_size) == (5000, 262144)
            continue
        assert m.rtcp_mux and m.rtcp_rsize
        offered_codecs = {c.payload_type: c for c in offered.codecs()}
        for c in m.codecs():
            assert c.mime in SUPPORTED and offered_codecs[c.payload_type].name == c.name
            assert offered_codecs[c.payload_type].fmtp == c.fmtp  # the offerer's fmtp, verbatim
            assert set(c.rtcp_fb) <= FEEDBACK
        assert set(m.extmaps()) <= set(offered.extmaps())
        info = negotiated.by_mid(m.mid or "")
        assert info is not None and info.direction == m.direction and info.kind == m.kind
        assert info.extensions == {uri: i for i, uri in m.extmaps()}
        for codec in info.negotiated_codecs:
            assert codec.rtx_payload_type is None or offered_codecs[codec.rtx_payload_type].mime == "rtx"
        if info.send_ssrc is None:
            assert m.ssrcs() == {} and m.msid is None
            continue
        assert m.msid is not None and info.track_id == m.msid.split()[1]
        assert m.ssrcs()[info.send_ssrc]["cname"] == "roomcast"
        assert m.ssrcs()[info.send_ssrc]["msid"] == m.msid
        if info.rtx:
            assert info.send_rtx_ssrc is not None
            assert [(g.semantics, g.ssrcs) for g in m.ssrc_groups()] == [("FID", (info.send_ssrc, info.send_rtx_ssrc))]
        assert info.send_ssrc not in offered.ssrcs()


def test_echo_answer_details() -> None:
    negotiated = answer_for("audio_video")
    offer = parse(TEXT["audio_video"])
    audio, video = negotiated.media
    assert (audio.direction, video.direction) == ("sendrecv", "sendrecv")
    assert audio.codecs[0].name == "opus" and audio.clock_rate == 48000 and audio.rtx == {}
    assert [c.name for c in video.codecs][:1] == ["VP8"] and video.rtx
    assert all(c.fmtp_params().get("packetization-mode") == "1" for c in video.codecs if c.name == "H264")
    assert "AV1" not in {c.name for c in video.codecs} and "red" not in {c.name for c in audio.codecs}
    (group,) = offer.media[1].ssrc_groups()
    assert video.remote_ssrcs == (group.ssrcs[0],) and video.remote_rtx == {group.ssrcs[0]: group.ssrcs[1]}
    assert video.remote_track_id == (offer.media[1].msid or "").split()[1]
    assert video.send_rtx_ssrc is not None and audio.send_rtx_ssrc is None
    assert TWCC_URI not in video.extensions and "urn:ietf:params:rtp-hdrext:sdes:mid" in video.extensions


def test_deterministic_with_injected_rng() -> None:
    one, two = answer_for("audio_video", seed=5), answer_for("audio_video", seed=5)
    assert one.answer.serialize() == two.answer.serialize()
    assert answer_for("audio_video", seed=6).answer.serialize() != one.answer.serialize()


def test_publish_and_recvonly_modes_only_receive() -> None:
    modes: list[Mode] = ["publish", "recvonly"]
    for mode in modes:
        negotiated = answer_for("audio_video", mode)
        assert [m.direction for m in negotiated.media] == ["recvonly", "recvonly"]
        assert all(m.send_ssrc is None for m in negotiated.media)


def test_subscribe_sends_only_where_a_track_is_given() -> None:
    negotiated = answer_for("recvonly", "subscribe", send_tracks={"1": SendTrack("bob", "cam")})
    assert [m.direction for m in negotiated.media] == ["inactive", "sendonly"]
    assert negotiated.media[1].track_id == "cam" and negotiated.answer.media[1].msid == "bob cam"


def test_send_ssrcs_are_kept_across_renegotiation() -> None:
    negotiated = answer_for("audio_video", send_ssrcs={"1": (1111, 2222)})
    assert (negotiated.media[1].send_ssrc, negotiated.media[1].send_rtx_ssrc) == (1111, 2222)


def test_direction_callback() -> None:
    negotiated = answer_for("audio_video", direction=lambda m: "recvonly" if m.kind == "audio" else "sendonly")
    assert [m.direction for m in negotiated.media] == ["recvonly", "sendonly"]
    negotiated = answer_for("recvonly", direction=lambda m: "sendrecv")
    assert [m.direction for m in negotiated.media] == ["sendonly", "sendonly"]  # narrowed to what the offer allows


def test_simulcast_layers_are_accepted_as_recv() -> None:
    negotiated = answer_for("simulcast", "publish")
    (m,) = negotiated.answer.media
    assert [(r.id, r.direction) for r in m.rids()] == [("q", "recv"), ("h", "recv"), ("f", "recv")]
    assert m.simulcast is not None and m.simulcast.recv == (("q",), ("h",), ("f",))
    assert negotiated.media[0].rids == ("q", "h", "f") and negotiated.media[0].direction == "recvonly"
    uris = set(negotiated.media[0].extensions)
    assert {"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "urn:ietf:params:rtp-hdrext:sdes:mid"} <= uris


def test_data_channel_answer() -> None:
    negotiated = answer_for("audio_video_data")
    assert negotiated.data_mid == "2" and negotiated.max_message_size == 262144
    assert (negotiated.remote_sctp_port, negotiated.local_sctp_port) == (5000, 5000)
    refused = answer_for("audio_video_data", data_channels=False)
    assert refused.data_mid is None and refused.answer.media[2].port == 0
    assert refused.answer.bundle_mids() == ["0", "1"]
    with pytest.raises(NegotiationError) as info:
        answer_for("data", data_channels=False)
    assert info.value.code == "no_bundle"


def test_dtls_role_follows_offer_setup() -> None:
    passive = create_answer(parse(TEXT["audio_video"].replace("setup:actpass", "setup:passive")), params())
    assert passive.dtls_role == "client" and all(m.setup == "active" for m in passive.answer.media)
    active = create_answer(parse(TEXT["audio_video"].replace("setup:actpass", "setup:active")), params())
    assert active.dtls_role == "server" and all(m.setup == "passive" for m in active.answer.media)


def test_transport_cc_is_opt_in() -> None:
    negotiated = answer_for("audio_video", codecs=CodecPolicy(transport_cc=True))
    video = negotiated.media[1]
    assert TWCC_URI in video.extensions and all("transport-cc" in c.rtcp_fb for c in video.codecs)
    assert "transport-cc" in negotiated.answer.media[1].codecs()[0].rtcp_fb


def test_h264_policy() -> None:
    only_h264 = CodecPolicy(video=frozenset({"h264"}), h264_profiles=("42e0",))
    video = answer_for("audio_video", codecs=only_h264).media[1]
    assert [c.fmtp_params()["profile-level-id"][:4] for c in video.codecs] == ["42e0"]
    assert video.rtx.keys() == {c.payload_type for c in video.codecs}
    unmatched = CodecPolicy(video=frozenset({"h264"}), h264_profiles=("f400",))  # falls back to every mode-1 entry
    video = answer_for("audio_video", codecs=unmatched).media[1]
    assert len(video.codecs) > 1 and all(c.fmtp_params()["packetization-mode"] == "1" for c in video.codecs)


def test_unsupported_codec_m_line_is_rejected_alone() -> None:
    offer = parse(TEXT["audio_video"])
    video = offer.media[1]
    only_av1 = [c.payload_type for c in video.codecs() if c.name == "AV1"]
    stripped = _with_media(offer, 1, _keep_pts(video, only_av1))
    negotiated = create_answer(stripped, params())
    assert negotiated.answer.media[1].port == 0 and negotiated.answer.media[1].mid == "1"
    assert negotiated.answer.bundle_mids() == ["0"] and [m.mid for m in negotiated.media] == ["0"]


# ------------------------------------------------------------------ every NegotiationError


def _with_media(offer: SessionDescription, index: int, m: MediaDescription) -> SessionDescription:
    media = list(offer.media)
    media[index] = m
    return SessionDescription(offer.origin, offer.name, offer.timing, offer.attributes, tuple(media))


def _keep_pts(m: MediaDescription, pts: list[int]) -> MediaDescription:
    keep = {str(pt) for pt in pts}
    attrs = tuple(
        (k, v) for k, v in m.attributes if k not in ("rtpmap", "fmtp", "rtcp-fb") or (v or "").split(" ")[0] in keep
    )
    return MediaDescription(m.kind, m.port, m.proto, tuple(f for f in m.fmts if f in keep), m.connection, attrs)


def _drop(text: str, prefix: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(prefix))


def _only_unknown_codecs(text: str) -> SessionDescription:
    offer = parse(text)
    for i, m in enumerate(offer.media):
        unknown = [c.payload_type for c in m.codecs() if c.mime in ("g722", "cn", "telephone-event", "av1", "red")]
        offer = _with_media(offer, i, _keep_pts(m, unknown))
    return offer


AV = TEXT["audio_video"]


@pytest.mark.parametrize(
    ("offer", "code"),
    [
        (_drop(AV, "a=fingerprint:"), "missing_fingerprint"),
        (_drop(AV, "a=ice-ufrag:"), "missing_ice_credentials"),
        (_drop(AV, "a=ice-pwd:"), "missing_ice_credentials"),
        (AV.replace("a=setup:actpass", "a=setup:holdconn"), "bad_setup"),
        (AV.replace("a=setup:actpass", "a=setup:whatever"), "bad_setup"),
        (AV.replace("a=mid:1", "a=mid:0"), "duplicate_mid"),
        (_drop(AV, "a=mid:"), "missing_mid"),
        (_drop(AV, "a=rtcp-mux"), "rtcp_mux_required"),
        (AV.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7 8"), "no_bundle"),
        (_drop(AV, "a=group:"), "no_bundle"),
        (AV[: AV.index("m=")], "no_media"),
        (_drop(TEXT["data"], "a=sctp-port").replace("webrtc-datachannel", "something-else"), "no_bundle"),
    ],
)
def test_negotiation_errors(offer: str, code: str) -> None:
    with pytest.raises(NegotiationError) as info:
        create_answer(parse(offer), params())
    assert info.value.code == code and isinstance(info.value, ValueError) and info.value.message


@pytest.mark.parametrize("name", ["audio_video", "recvonly", "simulcast"])
def test_unknown_codecs_only_on_every_m_line(name: str) -> None:
    with pytest.raises(NegotiationError) as info:
        create_answer(_only_unknown_codecs(TEXT[name]), params())
    assert info.value.code == "no_acceptable_media"


def test_single_m_line_without_bundle_group_is_accepted() -> None:
    negotiated = create_answer(parse(_drop(TEXT["simulcast"], "a=group:")), params("publish"))
    assert negotiated.answer.bundle_mids() == [] and negotiated.answer.media[0].port == 40000


def test_rejected_m_line_is_not_required_to_have_rtcp_mux() -> None:
    offer = parse(AV)
    audio = offer.media[0]
    disabled = MediaDescription(
        "audio", 0, audio.proto, audio.fmts, audio.connection, tuple(a for a in audio.attributes if a[0] != "rtcp-mux")
    )
    negotiated = create_answer(_with_media(offer, 0, disabled), params())
    assert negotiated.answer.media[0].port == 0 and negotiated.answer.bundle_mids() == ["1"]
