"""RFC 6962 §2.1 Merkle tree hashing, audit paths and consistency proofs (RFC 9162 §2.1 checks).

Pure functions. A tree is reached through the hashes of its *complete* subtrees ("nodes"):
node ``(level, index)`` covers leaves ``[index·2^level, (index+1)·2^level)`` and level 0 is a
leaf hash. Every hash a proof needs is a range ``[start, end)`` that RFC 6962 splits into
complete subtrees, so a proof costs O(log n) stored nodes, never a rehash of the leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

Node = tuple[int, int]  # (level, index)
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees, left to right, that RFC 6962 composes ``MTH(D[start:end])`` from.

    ``start`` must be aligned as the recursion leaves it (a multiple of the first chunk).
    """
    nodes: list[Node] = []
    while start < end:
        n = end - start
        size = 1 << (n.bit_length() - 1)  # largest power of two ≤ n
        level = size.bit_length() - 1
        if start % size:
            raise ValueError(f"range [{start}, {end}) is not a subtree of an RFC 6962 tree")
        nodes.append((level, start >> level))
        start += size
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root over complete subtrees given left to right (largest first)."""
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PATH(index, D[0:size]) (RFC 6962 §2.1.1), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    return out[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PROOF(first, D[0:second]) (RFC 6962 §2.1.2)."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    if first == second:
        return []
    out: list[tuple[int, int]] = []
    start, end, m, whole = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                out.append((start, end))
            break
        k = _split(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, whole = start + k, m - k, False
    return out[::-1]


def range_hashes(
    ranges: Sequence[tuple[int, int]], lookup: Callable[[Iterable[Node]], Mapping[Node, bytes]]
) -> list[bytes]:
    """Hash each range from its complete subtrees, fetched with one ``lookup`` call."""
    parts = [range_nodes(s, e) for s, e in ranges]
    found = lookup({n for p in parts for n in p})
    return [fold([found[n] for n in p]) for p in parts]


class Frontier:
    """The right edge of a growing tree: one complete subtree per bit of its size (a compact
    range). Appending a leaf reports the nodes it completes, so they can be stored."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        self.nodes: list[tuple[int, int, bytes]] = [
            (level, index, h) for (level, index), h in zip(range_nodes(0, size), hashes, strict=True)
        ]
        self.size = size

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the interior nodes (level, index, hash) it completed."""
        made: list[tuple[int, int, bytes]] = []
        level, index, h = 0, self.size, leaf
        while self.nodes and self.nodes[-1][0] == level:
            _, left_index, left = self.nodes.pop()
            level, index, h = level + 1, left_index >> 1, node_hash(left, h)
            made.append((level, index, h))
        self.nodes.append((level, index, h))
        self.size += 1
        return made

    def root(self) -> bytes:
        """MTH of the whole tree."""
        return fold([h for _, _, h in self.nodes])


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, computed from scratch (what a verifier does)."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def verify_inclusion(*, leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    *, first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show tree ``first`` is a prefix of tree ``second``?"""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a node of the second
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root
