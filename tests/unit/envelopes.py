"""Helpers for tests that forge envelopes the way an attacker could."""

from __future__ import annotations

import hashlib

from keykeeper.crypto.envelope import CHECK_BYTES


def recheck(body: bytes) -> bytes:
    """Append valid check bytes: the trailer is a corruption check, not a MAC."""
    return body + hashlib.sha256(body).digest()[:CHECK_BYTES]
