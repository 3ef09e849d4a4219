"""The Merkle tree functions against RFC 6962 §2.1's recursive definitions, for every small tree."""

from __future__ import annotations

import hashlib

import pytest

from pki.transparency import merkle as m


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return m.leaf_hash(d[0])
    k = m._split(len(d))
    return m.node_hash(mth(d[:k]), mth(d[k:]))


def path(i: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = m._split(len(d))
    return [*path(i, d[:k]), mth(d[k:])] if i < k else [*path(i - k, d[k:]), mth(d[:k])]


def subproof(first: int, d: list[bytes], whole: bool) -> list[bytes]:
    if first == len(d):
        return [] if whole else [mth(d)]
    k = m._split(len(d))
    if first <= k:
        return [*subproof(first, d[:k], whole), mth(d[k:])]
    return [*subproof(first - k, d[k:], False), mth(d[:k])]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31])
def test_stored_subtrees_give_rfc6962_roots_paths_and_proofs(size):
    data = [bytes([i]) * 3 for i in range(size)]
    leaves = [m.leaf_hash(x) for x in data]
    frontier = m.Frontier()
    store: dict[m.Node, bytes] = {}
    for i, h in enumerate(leaves):
        store[(0, i)] = h
        store.update({(lv, ix): nh for lv, ix, nh in frontier.append(h)})
    assert frontier.root() == mth(data) == m.root_of(leaves)
    reloaded = m.Frontier(size, [store[n] for n in m.range_nodes(0, size)])
    assert reloaded.root() == mth(data)

    def lookup(nodes):
        return {n: store[n] for n in nodes}

    for i in range(size):
        proof = m.range_hashes(m.inclusion_ranges(i, size), lookup)
        assert proof == path(i, data)
        assert m.verify_inclusion(leaf=leaves[i], index=i, size=size, path=proof, root=mth(data))
        assert not m.verify_inclusion(
            leaf=leaves[i], index=i, size=size, path=proof, root=mth([b"x", *data[1:]])
        )
    for first in range(1, size + 1):
        proof = m.range_hashes(m.consistency_ranges(first, size), lookup)
        assert proof == subproof(first, data, True)
        assert m.verify_consistency(
            first=first, second=size, first_root=mth(data[:first]), second_root=mth(data), proof=proof
        )
        if first < size:
            forged = mth([b"forged", *data[1:first]])
            assert not m.verify_consistency(
                first=first, second=size, first_root=forged, second_root=mth(data), proof=proof
            )


def test_proofs_outside_the_tree_are_refused():
    with pytest.raises(ValueError, match="not in a tree"):
        m.inclusion_ranges(5, 5)
    with pytest.raises(ValueError, match="no consistency proof"):
        m.consistency_ranges(6, 5)
    assert m.fold([]) == hashlib.sha256(b"").digest()
