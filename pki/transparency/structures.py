"""RFC 6962 §3 TLS structures: MerkleTreeLeaf, TreeHeadSignature, DigitallySigned, chains."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence

# RFC 6962 §3.4 / §3.5 enums.
V1 = 0
TIMESTAMPED_ENTRY = 0
X509_ENTRY = 0
TREE_HASH = 1
# RFC 5246 §7.4.1.4.1: HashAlgorithm sha256(4), SignatureAlgorithm ecdsa(3).
SHA256 = 4
ECDSA = 3
# A private entry type (RFC 6962 leaves 2..65535 unassigned) for leaves that are not X.509
# certificates: KMI's audit checkpoints in a sibling log. Monitors skip what they do not know.
RECORD_ENTRY_TYPE = 0x4B4D


def _u24(n: int) -> bytes:
    if not 0 <= n < 1 << 24:
        raise ValueError("an opaque<..2^24-1> is at most 16 MiB")
    return n.to_bytes(3, "big")


def timestamp_ms(when: dt.datetime) -> int:
    """Milliseconds since the epoch (RFC 6962 uses them for every timestamp)."""
    return int(when.timestamp() * 1000)


def x509_leaf(*, timestamp: int, certificate_der: bytes) -> bytes:
    """MerkleTreeLeaf { v1, timestamped_entry { timestamp, x509_entry, ASN.1Cert, no extensions } }."""
    return (
        struct.pack(">BBQH", V1, TIMESTAMPED_ENTRY, timestamp, X509_ENTRY)
        + _u24(len(certificate_der))
        + certificate_der
        + b"\x00\x00"
    )


def record_leaf(*, timestamp: int, record: bytes) -> bytes:
    """A MerkleTreeLeaf carrying a KMI record (``RECORD_ENTRY_TYPE``) instead of a certificate."""
    return (
        struct.pack(">BBQH", V1, TIMESTAMPED_ENTRY, timestamp, RECORD_ENTRY_TYPE)
        + _u24(len(record))
        + record
        + b"\x00\x00"
    )


def parse_x509_leaf(leaf: bytes) -> tuple[int, int, bytes]:
    """(timestamp, entry type, the entry's opaque bytes) of a MerkleTreeLeaf KMI wrote."""
    if len(leaf) < 17:
        raise ValueError("MerkleTreeLeaf too short")
    version, leaf_type, timestamp, entry_type = struct.unpack(">BBQH", leaf[:12])
    if version != V1 or leaf_type != TIMESTAMPED_ENTRY:
        raise ValueError("not a v1 timestamped_entry")
    length = int.from_bytes(leaf[12:15], "big")
    body = leaf[15 : 15 + length]
    if len(body) != length or leaf[15 + length :] != b"\x00\x00":
        raise ValueError("MerkleTreeLeaf length mismatch")
    return timestamp, entry_type, body


def certificate_chain(chain_der: Sequence[bytes]) -> bytes:
    """extra_data of an x509_entry: ASN.1Cert certificate_chain<0..2^24-1> (RFC 6962 §4.6)."""
    body = b"".join(_u24(len(c)) + c for c in chain_der)
    return _u24(len(body)) + body


def tree_head_input(*, timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """The TreeHeadSignature structure a tree head's signature covers (RFC 6962 §3.5)."""
    if len(root_hash) != 32:
        raise ValueError("a SHA-256 root hash is 32 bytes")
    return struct.pack(">BBQQ", V1, TREE_HASH, timestamp, tree_size) + root_hash


def digitally_signed(signature_der: bytes) -> bytes:
    """DigitallySigned { sha256, ecdsa, opaque signature<0..2^16-1> } (RFC 5246 §4.7)."""
    return struct.pack(">BBH", SHA256, ECDSA, len(signature_der)) + signature_der


def parse_digitally_signed(blob: bytes) -> bytes:
    """The DER signature inside a DigitallySigned of (sha256, ecdsa); ValueError otherwise."""
    if len(blob) < 4:
        raise ValueError("DigitallySigned too short")
    hash_alg, sig_alg, length = struct.unpack(">BBH", blob[:4])
    if (hash_alg, sig_alg) != (SHA256, ECDSA) or len(blob) != 4 + length:
        raise ValueError("not a SHA-256 ECDSA DigitallySigned")
    return blob[4:]
