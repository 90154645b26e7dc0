"""proctrace.testing.OTLPReceiver without starting it: what it refuses at construction."""

from __future__ import annotations

import pytest

from proctrace.testing import OTLPReceiver


def test_invalid_protocol_rejected() -> None:
    """Unknown protocols raise ValueError at construction."""
    with pytest.raises(ValueError, match="protocol"):
        OTLPReceiver("http/json")
