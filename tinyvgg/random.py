"""Random numbers: the seed source, and the Philox-4x32-10 counter-based generator.

A counter-based generator is a pure function ``bits = philox(counter, key)``:
any element's random bits can be computed on its own, in any order, on any
device. Dropout uses it with ``key = seed`` and ``counter = element index``,
so the same seed gives the same mask on the CPU and on a GPU, where each
thread computes its own element.

Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011) maps a 128-bit counter ``(c0, c1, c2, c3)`` and a 64-bit key
``(k0, k1)`` to four 32-bit words through 10 rounds of::

    hi0, lo0 = 0xD2511F53 * c0      (the high and low 32 bits of the 64-bit product)
    hi1, lo1 = 0xCD9E8D57 * c2
    c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0

with the key bumped by the Weyl constants ``(0x9E3779B9, 0xBB67AE85)``
between rounds.
"""
from __future__ import annotations

import numpy as np

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
MASK32 = 0xFFFFFFFF
ROUNDS = 10


def philox4x32_10_scalar(counter, key):
    """Reference Philox on Python ints: one 4-word counter, one 2-word key."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_index in range(ROUNDS):
        if round_index:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        p0, p1 = PHILOX_M[0] * c0, PHILOX_M[1] * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return c0, c1, c2, c3


def philox4x32_10(counters, key):
    """Vectorised Philox: ``counters`` is (n, 4) uint32, ``key`` two ints; returns (n, 4) uint32.

    Words are held in uint64 so that the 32x32-bit products fit exactly.
    """
    c = np.asarray(counters, dtype=np.uint64)
    c0, c1, c2, c3 = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    k0, k1 = np.uint64(key[0] & MASK32), np.uint64(key[1] & MASK32)
    m0, m1, mask = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1]), np.uint64(MASK32)
    w0, w1, shift = np.uint64(PHILOX_W[0]), np.uint64(PHILOX_W[1]), np.uint64(32)
    for round_index in range(ROUNDS):
        if round_index:
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def check_seed(op: str, seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def element_bits(seed: int, n: int, first: int = 0) -> np.ndarray:
    """32 random bits for each of the elements first..first+n-1 under ``seed``.

    Element ``i`` takes word ``i % 4`` of ``philox(counter=(i // 4, 0, 0, 0)
    split into two 32-bit words, key=seed split likewise)``.
    """
    lead = first % 4  # the blocks start at a multiple of 4
    blocks = np.arange(first // 4, (first + n + 3) // 4, dtype=np.uint64)
    counters = np.zeros((blocks.size, 4), dtype=np.uint64)
    counters[:, 0] = blocks & np.uint64(MASK32)
    counters[:, 1] = blocks >> np.uint64(32)
    key = (seed & MASK32, seed >> 32)
    return philox4x32_10(counters, key).reshape(-1)[lead:lead + n]


def element_bits_scalar(seed: int, i: int) -> int:
    """The same bits for one element, from the scalar reference (for tests and study)."""
    block = i // 4
    words = philox4x32_10_scalar((block & MASK32, block >> 32, 0, 0), (seed & MASK32, seed >> 32))
    return words[i % 4]


# --- the seed source for everything that draws random numbers without a seed --------

_generator = np.random.default_rng(0)
#: where the batch a process works on starts in a larger batch split over processes
_first_sample = 0


def manual_seed(seed: int) -> None:
    """Make weight initialisation and unseeded dropout reproducible."""
    global _generator
    _generator = np.random.default_rng(check_seed("manual_seed", seed))


def set_first_sample(first: int) -> None:
    """Say that the batch this process is about to run is part of a larger batch, split
    over several processes, and that its sample 0 is sample ``first`` of that batch.

    Dropout then numbers each element by its place in the whole batch, so sample k of the
    whole batch gets the same mask wherever it runs and however the batch is split.
    0 (the default) is a batch run whole."""
    global _first_sample
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
        raise ValueError(f"set_first_sample: first must be a non-negative integer, "
                         f"got {first!r}")
    _first_sample = int(first)


def first_sample() -> int:
    """The place of this process's sample 0 in the batch split over processes
    (:func:`set_first_sample`)."""
    return _first_sample


def default_generator() -> np.random.Generator:
    return _generator


def next_seed() -> int:
    """A fresh 64-bit seed drawn from the global generator."""
    return int(_generator.integers(0, 2**63, dtype=np.int64))
