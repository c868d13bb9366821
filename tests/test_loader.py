"""DataLoader: every sample once per epoch, batches a pure function of (seed, epoch), drop_last,
dtypes, and the prefetch thread: identical batches, errors raised in the consumer, and a clean
stop when the consumer leaves early."""
import threading
import time

import numpy as np
import pytest

from tinyvgg.data import DataLoader, Dataset
from tinyvgg.data.loader import part_bounds
from tinyvgg.data.transforms import Compose, RandomCrop, RandomHorizontalFlip


def numbered(n=50, shape=(1, 3, 3)):
    """Sample i's pixels all equal i (mod 256), so a batch shows which samples it holds."""
    images = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None],
                             (n,) + shape).copy()
    return Dataset(images, np.arange(n) % 7, [str(c) for c in range(7)], "numbered")


def sample_ids(images):
    return np.rint(images[:, 0, 0, 0] * 255).astype(int).tolist()


def epoch_ids(loader, epoch):
    return [sample_ids(images) for images, _ in loader.batches(epoch)]


def collect(loader, epoch):
    return [(images.copy(), labels.copy()) for images, labels in loader.batches(epoch)]


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (images_a, labels_a), (images_b, labels_b) in zip(first, second):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)


AUGMENT = Compose([RandomHorizontalFlip(), RandomCrop(3, padding=1)])


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("DataLoader-prefetch")]


# --- order --------------------------------------------------------------------------

def test_each_epoch_serves_every_sample_once_in_a_new_order():
    loader = DataLoader(numbered(50), batch_size=8, seed=1)
    epochs = [sum(epoch_ids(loader, epoch), []) for epoch in range(3)]
    for ids in epochs:
        assert sorted(ids) == list(range(50))
    assert epochs[0] != list(range(50)) and epochs[0] != epochs[1] != epochs[2]
    assert epochs[0] == np.random.default_rng([1, 0]).permutation(50).tolist()


def test_labels_travel_with_their_images():
    data = numbered(30)
    for images, labels in DataLoader(data, batch_size=7, seed=3).batches(2):
        assert labels.dtype == np.int64
        assert labels.tolist() == [i % 7 for i in sample_ids(images)]


def test_batches_are_a_pure_function_of_seed_and_epoch():
    data = numbered(40)
    first = DataLoader(data, batch_size=6, seed=5, transform=AUGMENT)
    resumed = DataLoader(data, batch_size=6, seed=5, transform=AUGMENT)
    collect(first, 0)  # what ran before changes nothing
    assert_same_batches(collect(first, 3), collect(resumed, 3))
    assert sum(epoch_ids(first, 3), []) != sum(epoch_ids(first, 4), [])
    other_seed = DataLoader(data, batch_size=6, seed=6, transform=AUGMENT)
    assert sum(epoch_ids(first, 3), []) != sum(epoch_ids(other_seed, 3), [])


def test_each_batch_has_its_own_transform_generator():
    draws = []

    def record(batch, rng):
        draws.append(rng.random())
        return batch
    loader = DataLoader(numbered(20), batch_size=5, seed=2, transform=record)
    list(loader.batches(1))
    assert draws == [loader.batch_rng(1, i).random() for i in range(4)]
    assert len(set(draws)) == 4
    # a stream apart from the permutation's, which [seed, epoch, 0] would repeat
    assert draws[0] != np.random.default_rng([2, 1]).random()
    assert np.random.default_rng([2, 1, 0]).random() == np.random.default_rng([2, 1]).random()


def test_without_shuffle_samples_come_in_order():
    loader = DataLoader(numbered(10), batch_size=4, shuffle=False)
    assert epoch_ids(loader, 0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert epoch_ids(loader, 7) == epoch_ids(loader, 0)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_epoch_resumed_part_way_gives_the_remaining_batches(prefetch):
    data = numbered(23, (1, 4, 4))
    full = collect(DataLoader(data, batch_size=4, seed=4, transform=AUGMENT), 2)
    resumed = DataLoader(data, batch_size=4, seed=4, transform=AUGMENT, prefetch=prefetch)
    assert_same_batches(collect_from(resumed, 2, 4), full[4:])
    assert collect_from(resumed, 2, 6) == []
    with pytest.raises(ValueError, match="DataLoader: start must be at most the 6 batches"):
        resumed.batches(2, start=7)


def collect_from(loader, epoch, start):
    return [(images.copy(), labels.copy()) for images, labels in loader.batches(epoch, start)]


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (12, 4, True, [4, 4, 4]),
    (3, 5, False, [3]),
    (1, 1, True, [1]),
])
def test_drop_last_and_len(n, batch_size, drop_last, sizes):
    loader = DataLoader(numbered(n), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(ids) for ids in epoch_ids(loader, 0)] == sizes


@pytest.mark.parametrize("transform", [None, AUGMENT], ids=["plain", "augmented"])
@pytest.mark.parametrize("parts", [2, 3])
def test_the_parts_of_each_batch_are_the_whole_batch_cut_in_order(transform, parts):
    """Parts k = 0..parts-1 of every batch, joined in order, are the batch one loader
    makes whole, augmentation draws included; the last batch (2 samples) leaves a
    part empty when there are 3."""
    data = numbered(22, (1, 4, 4))
    whole = collect(DataLoader(data, batch_size=5, seed=3, transform=transform), 1)
    cut = [collect(DataLoader(data, batch_size=5, seed=3, transform=transform,
                              part=(k, parts), prefetch=k % 2), 1) for k in range(parts)]
    for index, (images, labels) in enumerate(whole):
        sizes = [len(c[index][1]) for c in cut]
        assert sizes == [b - a for a, b in (part_bounds(len(labels), k, parts)
                                            for k in range(parts))]
        np.testing.assert_array_equal(np.concatenate([c[index][0] for c in cut]), images)
        np.testing.assert_array_equal(np.concatenate([c[index][1] for c in cut]), labels)
    assert [len(labels) for _, labels in whole][-1] == 2


def test_stop_ends_an_epoch_early_and_batch_size_of_counts_the_whole_batch():
    loader = DataLoader(numbered(10), batch_size=4, part=(1, 2))
    assert [loader.batch_size_of(i) for i in range(4)] == [4, 4, 2, 0]
    assert [len(labels) for _, labels in loader.batches(0, stop=2)] == [2, 2]
    with pytest.raises(ValueError, match="DataLoader: stop must be at most the 3 batches"):
        loader.batches(0, stop=4)


@pytest.mark.parametrize("part, error, fragment", [
    ((2, 2), ValueError, "part 2 does not exist among 2 parts"),
    ((0, 0), ValueError, "part's number of parts must be >= 1, got 0"),
    ([0, 2], TypeError, r"part must be a pair \(k, parts\), got \[0, 2\]"),
])
def test_a_part_must_exist(part, error, fragment):
    with pytest.raises(error, match=f"DataLoader: {fragment}"):
        DataLoader(numbered(10), batch_size=2, part=part)


# --- what a batch is ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batches_are_contiguous_floats_in_the_unit_interval(dtype):
    flip_view = lambda batch, rng: batch[:, :, :, ::-1]  # noqa: E731  (not contiguous)
    loader = DataLoader(numbered(20, (3, 4, 5)), batch_size=8, dtype=dtype, transform=flip_view)
    for images, labels in loader.batches(0):
        assert images.dtype == dtype and images.flags.c_contiguous and images.shape[1:] == (3, 4, 5)
        assert labels.dtype == np.int64 and labels.flags.c_contiguous
        assert 0 <= images.min() and images.max() <= 1
    reference = (np.arange(20) / 255).astype(dtype)
    loader = DataLoader(numbered(20), batch_size=20, shuffle=False, dtype=dtype)
    images, _ = next(iter(loader.batches(0)))
    np.testing.assert_allclose(images[:, 0, 0, 0], reference, rtol=1e-6)


def test_a_transform_must_return_a_batch_of_the_same_size():
    loader = DataLoader(numbered(10), batch_size=4, transform=lambda batch, rng: batch[:2])
    with pytest.raises(ValueError, match=r"DataLoader: the transform must return a batch of "
                                         r"shape \(4, C, H, W\), got shape \(2, 1, 3, 3\)"):
        next(iter(loader.batches(0)))


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an integer, got 2.0"),
    (dict(batch_size=True), TypeError, "batch_size must be an integer"),
    (dict(batch_size=2, seed=-1), ValueError, "seed must be >= 0"),
    (dict(batch_size=2, prefetch=-1), ValueError, "prefetch must be >= 0"),
    (dict(batch_size=2, shuffle=1), TypeError, "shuffle must be True or False"),
    (dict(batch_size=2, transform=3), TypeError, "transform must be callable"),
    (dict(batch_size=2, dtype=np.int32), ValueError, "dtype must be float32 or float64, got int32"),
    (dict(batch_size=11, drop_last=True), ValueError,
     "drop_last with batch_size 11 leaves no batch of the 10 samples"),
])
def test_loader_arguments_are_checked(kwargs, error, fragment):
    with pytest.raises(error, match=f"DataLoader: {fragment}"):
        DataLoader(numbered(10), **kwargs)


def test_loader_refuses_an_empty_or_foreign_dataset_and_a_bad_epoch():
    with pytest.raises(ValueError, match="DataLoader: the dataset 'numbered\\[0 of 5\\]' is empty"):
        DataLoader(numbered(5).subset([]), batch_size=1)
    with pytest.raises(TypeError,
                       match="DataLoader: dataset must be a tinyvgg.data.Dataset, got tuple"):
        DataLoader((np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2)), batch_size=1)
    loader = DataLoader(numbered(5), batch_size=2, prefetch=2)
    with pytest.raises(ValueError, match="DataLoader: epoch must be >= 0, got -1"):
        loader.batches(-1)  # refused at once, before any iteration
    assert prefetch_threads() == []


# --- prefetching -----------------------------------------------------------------------

@pytest.mark.parametrize("prefetch", [1, 3])
def test_prefetching_gives_the_same_batches(prefetch):
    data = numbered(45, (1, 4, 4))
    plain = DataLoader(data, batch_size=4, seed=9, transform=AUGMENT)
    ahead = DataLoader(data, batch_size=4, seed=9, transform=AUGMENT, prefetch=prefetch)
    for epoch in (0, 1):
        assert_same_batches(collect(ahead, epoch), collect(plain, epoch))
    assert prefetch_threads() == []


def test_prefetch_runs_in_one_daemon_thread_that_stays_at_most_k_ahead():
    calls = []

    def counting(batch, rng):
        calls.append(1)
        return batch
    loader = DataLoader(numbered(60), batch_size=2, transform=counting, prefetch=2)
    batches = loader.batches(0)
    assert prefetch_threads() == []  # nothing starts before the first batch is asked for
    next(batches)
    (worker,) = prefetch_threads()
    assert worker.daemon
    time.sleep(0.2)  # time for the worker to fill the queue; it may only be slower
    # one consumed, two queued, one made and waiting for room
    assert len(calls) <= 1 + 2 + 1
    batches.close()
    assert not worker.is_alive() and prefetch_threads() == []


def test_a_worker_error_is_raised_in_the_consumer_after_the_batches_before_it():
    def fail_on_sample_7(batch, rng):
        if 7 in sample_ids(batch):
            raise RuntimeError("cannot augment sample 7")
        return batch
    for prefetch in (0, 2):
        loader = DataLoader(numbered(12), batch_size=3, shuffle=False, transform=fail_on_sample_7,
                            prefetch=prefetch)
        served = []
        with pytest.raises(RuntimeError, match="cannot augment sample 7"):
            for images, _ in loader.batches(0):
                served.append(sample_ids(images))
        assert served == [[0, 1, 2], [3, 4, 5]]
        assert prefetch_threads() == []


def test_leaving_early_stops_the_thread():
    baseline = threading.active_count()
    loader = DataLoader(numbered(200), batch_size=2, transform=AUGMENT, prefetch=1)
    for _ in loader.batches(0):
        assert len(prefetch_threads()) == 1
        break
    assert prefetch_threads() == []
    batches = loader.batches(1)
    next(batches)
    with pytest.raises(KeyboardInterrupt):
        batches.throw(KeyboardInterrupt)  # as if Ctrl-C arrived while the consumer waited
    assert prefetch_threads() == []
    batches = loader.batches(2)
    next(batches)
    del batches  # dropped without close: the generator's cleanup still stops the worker
    assert prefetch_threads() == [] and threading.active_count() <= baseline
