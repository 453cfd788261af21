"""Egress: recordings without transcoding, made by a hidden SDK participant over loopback (docs/whip.md)."""
