"""Deterministic fractions from text, for choices that must be reproducible.

Probe traffic, exploration, shadow sampling and the simulator all need "a number in
[0, 1) that depends only on this key", so that the planner stays pure and a request id
always gets the same decision.
"""

from __future__ import annotations

import hashlib


def fraction(key: str) -> float:
    """A uniform-looking number in [0, 1) that is a fixed function of ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
