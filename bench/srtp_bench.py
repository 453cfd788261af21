"""Cost of SRTP per packet: ``python bench/srtp_bench.py [packets]``.

Prints µs per protect and per unprotect of a 1200-byte RTP packet for each DTLS-SRTP profile, through
:class:`roomcast.proto.srtp.SrtpContext` (so the figures include our wrapper, as the hot path pays it).
Every packet has its own sequence number, as in a real stream; best of 5 runs.
"""

from __future__ import annotations

import os
import struct
import sys
import time

from roomcast.proto.srtp import SrtpContext

PROFILES = {"SRTP_AEAD_AES_128_GCM": 28, "SRTP_AES128_CM_SHA1_80": 30}
PACKET_SIZE = 1200


def packets(count: int) -> list[bytes]:
    payload = os.urandom(PACKET_SIZE - 12)
    return [struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x1234ABCD) + payload for seq in range(count)]


def measure(profile: str, key_len: int, count: int) -> tuple[float, float]:
    best_protect = best_unprotect = float("inf")
    clear = packets(count)
    for _ in range(5):
        key_a, key_b = os.urandom(key_len), os.urandom(key_len)
        sender, receiver = SrtpContext(profile, key_a, key_b), SrtpContext(profile, key_b, key_a)
        start = time.perf_counter_ns()
        protected = [sender.protect(p) for p in clear]
        middle = time.perf_counter_ns()
        for p in protected:
            receiver.unprotect(p)
        end = time.perf_counter_ns()
        best_protect = min(best_protect, (middle - start) / count / 1000)
        best_unprotect = min(best_unprotect, (end - middle) / count / 1000)
    return best_protect, best_unprotect


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 20_000
    if not 0 < count <= 65_536:
        print("packets must be between 1 and 65536 (one sequence number each)", file=sys.stderr)
        return 2
    print(f"{PACKET_SIZE}-byte RTP, {count} packets, best of 5")
    for profile, key_len in PROFILES.items():
        protect, unprotect = measure(profile, key_len, count)
        print(f"{profile:24s} protect {protect:6.2f} µs   unprotect {unprotect:6.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
