"""Send-side bandwidth estimation for one subscriber transport, sans-IO (time is an argument).

Transport-wide congestion control as Chrome implements it: every packet we send to a peer gets a
transport-wide sequence number (:mod:`.twcc_sender`), the peer reports arrival times in transport-cc
feedback, and a GCC-style estimator (draft-ietf-rmcat-gcc-02, as refined in libwebrtc's goog_cc)
turns those reports into a target bitrate: a delay-based part (:mod:`.inter_arrival`,
:mod:`.trendline`, :mod:`.overuse`, :mod:`.aimd`), a loss-based part (:mod:`.loss_based`), an
acknowledged-bitrate estimate (:mod:`.acked_bitrate`) and upward probing (:mod:`.probe_controller`,
:mod:`.probe_estimator`), composed in :class:`GccEstimator`. Peers without transport-cc get
:class:`RembEstimator` (REMB + receiver-report loss). Publishers get feedback from
:class:`TwccFeedbackGenerator`, so their own (Chrome's) estimator works. docs/adaptive.md explains
the parameters and the figures the simulated-link tests measured.
"""

from roomcast.proto.bwe.common import BandwidthEstimator, BandwidthUsage, BweCounters, ProbeRequest
from roomcast.proto.bwe.gcc import GccConfig, GccEstimator
from roomcast.proto.bwe.remb import RembEstimator
from roomcast.proto.bwe.twcc_receiver import TwccFeedbackGenerator
from roomcast.proto.bwe.twcc_sender import PacketResults, TwccSender

__all__ = [
    "BandwidthEstimator",
    "BandwidthUsage",
    "BweCounters",
    "GccConfig",
    "GccEstimator",
    "PacketResults",
    "ProbeRequest",
    "RembEstimator",
    "TwccFeedbackGenerator",
    "TwccSender",
]
