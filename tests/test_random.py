"""Philox-4x32-10 against the Random123 known answers, and the dropout built on it."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvgg as tv
from helpers import in_layout, layouts_4d, leaf, randn
from tinyvgg import functional as F
from tinyvgg import nn
from tinyvgg.random import (MASK32, element_bits, element_bits_scalar, philox4x32_10,
                            philox4x32_10_scalar)

# (counter, key, expected output) from Random123's kat_vectors for philox4x32_10
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]
KAT_IDS = ["zeros", "ones", "pi"]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS, ids=KAT_IDS)
def test_scalar_philox_known_answers(counter, key, expected):
    assert tuple(philox4x32_10_scalar(counter, key)) == expected


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS, ids=KAT_IDS)
def test_vectorised_philox_known_answers(counter, key, expected):
    out = philox4x32_10(np.array([counter, counter], dtype=np.uint32), key)
    assert out.dtype == np.uint32 and out.shape == (2, 4)
    assert [tuple(int(v) for v in row) for row in out] == [expected, expected]


def test_vectorised_philox_is_elementwise_in_counters():
    counters = np.array([c for c, _, _ in KNOWN_ANSWERS], dtype=np.uint32)
    out = philox4x32_10(counters, (0xa4093822, 0x299f31d0))
    for row, counter in zip(out, counters):
        expected = philox4x32_10_scalar(tuple(int(c) for c in counter), (0xa4093822, 0x299f31d0))
        assert tuple(int(v) for v in row) == tuple(expected)


SEEDS = [0, 1, 12345, 2**32 - 1, 2**32, 2**32 + 7, 0xDEADBEEFCAFEF00D, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_element_bits_match_the_scalar_reference(seed):
    n = 4 * 37 + 3  # a partial last block
    bits = element_bits(seed, n)
    assert bits.dtype == np.uint32 and bits.shape == (n,)
    assert [int(b) for b in bits] == [element_bits_scalar(seed, i) for i in range(n)]


@given(seed=st.integers(0, 2**64 - 1),
       index=st.one_of(st.integers(0, 2**20), st.integers(2**34 - 64, 2**34 + 2**20),
                       st.integers(2**40, 2**63)))
def test_element_bits_scalar_follows_the_documented_counter_beyond_2_pow_32_blocks(seed, index):
    """Element i is word i % 4 of philox(counter=(i//4 low word, i//4 high word, 0, 0),
    key=(seed low word, seed high word)); the high counter word matters past 2**32 blocks."""
    block = index // 4
    counter = np.array([[block & MASK32, block >> 32, 0, 0]], dtype=np.uint32)
    words = philox4x32_10(counter, (seed & MASK32, seed >> 32))[0]
    assert element_bits_scalar(seed, index) == int(words[index % 4])


def test_element_bits_depend_on_the_high_seed_word():
    assert not np.array_equal(element_bits(1, 64), element_bits(1 + 2**32, 64))


# --- dropout -------------------------------------------------------------------------------

def ones(shape=(64, 64), dtype=np.float64):
    return leaf(np.ones(shape, dtype=dtype), requires_grad=False)


def kept(y):
    return y.numpy() != 0


def test_same_seed_gives_the_same_mask():
    np.testing.assert_array_equal(kept(F.dropout(ones(), 0.5, seed=3)),
                                  kept(F.dropout(ones(), 0.5, seed=3)))


def test_different_seeds_give_different_masks():
    a, b = kept(F.dropout(ones(), 0.5, seed=3)), kept(F.dropout(ones(), 0.5, seed=4))
    assert abs((a == b).mean() - 0.5) < 0.05  # independent masks agree half the time


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6),
                       st.integers(1, 6)), layout=layouts_4d, seed=st.integers(0, 2**64 - 1))
def test_mask_depends_on_logical_index_not_memory_layout(shape, layout, seed):
    x = randn(0, shape)
    y_contiguous = F.dropout(leaf(x, False), 0.5, seed=seed).numpy()
    y_layout = F.dropout(leaf(in_layout(x, layout), False), 0.5, seed=seed).numpy()
    np.testing.assert_array_equal(y_layout, y_contiguous)


@given(first=st.integers(0, 40), n=st.integers(0, 30), seed=st.integers(0, 2**64 - 1))
def test_element_bits_from_an_offset_are_the_whole_run_s(first, n, seed):
    np.testing.assert_array_equal(element_bits(seed, n, first),
                                  element_bits(seed, first + n)[first:])


@pytest.mark.parametrize("cuts", [(0, 3, 8), (0, 1, 5, 8), (0, 8)])
def test_a_batch_split_over_processes_gets_the_whole_batch_s_masks(cuts):
    """Each part, told where it starts, draws exactly its rows of the whole batch's mask,
    and its gradient is the matching rows of the whole batch's."""
    x = randn(2, (8, 5, 3))
    whole = leaf(x)
    y_whole = F.dropout(whole, 0.5, seed=9)
    y_whole.sum().backward()
    try:
        for start, stop in zip(cuts, cuts[1:]):
            tv.random.set_first_sample(start)
            part = leaf(x[start:stop])
            y = F.dropout(part, 0.5, seed=9)
            y.sum().backward()
            np.testing.assert_array_equal(y.numpy(), y_whole.numpy()[start:stop])
            np.testing.assert_array_equal(part.grad, whole.grad[start:stop])
    finally:
        tv.random.set_first_sample(0)


def test_first_sample_must_be_a_non_negative_integer():
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"set_first_sample: first must be a "
                                             r"non-negative integer, got"):
            tv.random.set_first_sample(bad)


def test_p_zero_is_the_identity_and_p_one_gives_zeros():
    x = leaf(randn(0, (3, 4)))
    np.testing.assert_array_equal(F.dropout(x, 0.0, seed=1).numpy(), x.numpy())
    y = F.dropout(x, 1.0, seed=1)
    np.testing.assert_array_equal(y.numpy(), np.zeros((3, 4)))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((3, 4)))


def test_eval_mode_is_the_identity():
    x = leaf(randn(0, (3, 4)))
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False, seed=1).numpy(), x.numpy())


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_and_mean_match_p(p):
    n = 1_000_000
    y = F.dropout(ones((1000, 1000)), p, seed=2024).numpy()
    kept_fraction = (y != 0).mean()
    assert abs(kept_fraction - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-15)
    # E[y] = x: the mean of y over many units of x = 1 is 1 within 5 standard errors
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / ((1 - p) * n))


def test_gradient_uses_the_forward_mask_and_scale():
    x = leaf(randn(0, (50, 40)))
    y = F.dropout(x, 0.3, seed=9)
    y.backward(np.ones((50, 40)))
    np.testing.assert_allclose(x.grad, kept(y) / 0.7, rtol=1e-15)


def test_unseeded_dropout_is_reproducible_after_manual_seed():
    tv.manual_seed(42)
    first = [kept(F.dropout(ones(), 0.5)) for _ in range(2)]
    tv.manual_seed(42)
    second = [kept(F.dropout(ones(), 0.5)) for _ in range(2)]
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # successive calls draw new masks


def test_dropout_module_in_train_and_eval_mode():
    layer = nn.Dropout(0.5)
    x = ones()
    assert layer.training
    y = layer(x).numpy()
    assert 0.4 < (y == 0).mean() < 0.6
    np.testing.assert_array_equal(y[y != 0], 2.0)
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
