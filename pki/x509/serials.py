"""Certificate serial numbers."""

from __future__ import annotations

import secrets

# RFC 5280 §4.1.2.2: positive, at most 20 octets. CA/B BR §7.1: at least 64 bits from a CSPRNG.
SERIAL_BITS = 159  # 20 octets with the top bit clear, so the DER INTEGER stays positive


def random_serial() -> int:
    """Return a positive serial with ~159 random bits (≥ 64 guaranteed), at most 20 octets."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial >= 1 << 64:
            return serial


def serial_hex(serial: int) -> str:
    """Return the canonical lower-case hex text of a serial (how it is stored and looked up)."""
    return format(serial, "x")


def normalize_serial(text: str) -> str:
    """Accept ``0A:1B…``, ``0x0a1b`` or ``a1b`` and return canonical hex."""
    cleaned = text.strip().lower().replace(":", "").removeprefix("0x")
    try:
        return serial_hex(int(cleaned, 16))
    except ValueError:
        raise ValueError(f"{text!r} is not a hexadecimal serial number") from None
