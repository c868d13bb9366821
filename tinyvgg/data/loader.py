"""Batches from a Dataset, reproducible to the bit: ``DataLoader``.

The order of an epoch and every random draw of its augmentation are a pure
function of (seed, epoch): the permutation comes from
``np.random.default_rng([seed, epoch])`` and batch i's transform from a
generator of its own, spawned from the same seed sequence with key (i,)
(NumPy's way of deriving independent streams). Nothing depends on what
ran before, so training resumed at epoch e sees exactly the batches it
would have seen, and prefetching in a thread changes nothing but speed.

A loader can serve one part of every batch (``part=(k, parts)``), for
training one model on several processes: batch i is made whole, with the
same draws as ever, and part k of it is served (:func:`part_bounds`), so the
parts of all processes together are the batch that one process would see.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from .datasets import Dataset
from .transforms import ToFloat, check_integer


def part_bounds(size: int, part: int, parts: int) -> tuple[int, int]:
    """(start, stop) of part ``part`` of ``parts`` near-equal contiguous parts of a
    batch of ``size`` samples: the first parts are the smaller ones when they differ."""
    return size * part // parts, size * (part + 1) // parts


def _integer(arg: str, value, minimum: int) -> int:
    return check_integer("DataLoader", arg, value, minimum)


def _flag(arg: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"DataLoader: {arg} must be True or False, got {value!r}")
    return bool(value)


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size``, epoch by epoch.

    ``batches(epoch)`` yields (images, labels): images (B, C, H, W) in
    ``dtype``, C-contiguous, made from the uint8 images by ``ToFloat``
    (scaled to [0, 1]) and then ``transform(batch, rng)`` when one is given;
    labels int64 (B,). ``shuffle`` draws a new order each epoch; without it
    the samples come in dataset order. ``drop_last`` leaves out a last batch
    smaller than ``batch_size``. ``prefetch`` = k > 0 prepares up to k
    batches ahead in a background thread, with identical results.
    ``part`` = (k, parts) serves only part k of each batch (:func:`part_bounds`;
    a part may be empty when a batch has fewer samples than parts).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, transform=None, prefetch: int = 0, dtype=np.float32,
                 part: tuple[int, int] = (0, 1)):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"DataLoader: dataset must be a tinyvgg.data.Dataset, "
                            f"got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError(f"DataLoader: the dataset {dataset.name!r} is empty")
        self.dataset = dataset
        self.batch_size = _integer("batch_size", batch_size, 1)
        self.shuffle = _flag("shuffle", shuffle)
        self.seed = _integer("seed", seed, 0)
        self.drop_last = _flag("drop_last", drop_last)
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable as transform(batch, rng), "
                            f"got {type(transform).__name__}")
        self.transform = transform
        self.prefetch = _integer("prefetch", prefetch, 0)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"DataLoader: dtype must be float32 or float64, got {self.dtype}")
        if self.drop_last and self.batch_size > len(dataset):
            raise ValueError(f"DataLoader: drop_last with batch_size {self.batch_size} leaves no "
                             f"batch of the {len(dataset)} samples of {dataset.name!r}")
        self.to_float = ToFloat(dtype=self.dtype)
        if not (isinstance(part, tuple) and len(part) == 2):
            raise TypeError(f"DataLoader: part must be a pair (k, parts), got {part!r}")
        parts = _integer("part's number of parts", part[1], 1)
        index = _integer("part's index", part[0], 0)
        if index >= parts:
            raise ValueError(f"DataLoader: part {index} does not exist among {parts} parts "
                             f"(they are numbered from 0)")
        self.part = (index, parts)

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"transform={self.transform!r}, prefetch={self.prefetch}, dtype={self.dtype.name}"
                + (f", part={self.part})" if self.part[1] > 1 else ")"))

    def batch_size_of(self, index: int) -> int:
        """The number of samples of batch ``index`` (all parts together)."""
        index = _integer("index", index, 0)
        return max(0, min(self.batch_size, len(self.dataset) - index * self.batch_size))

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch``, in the order they are served."""
        epoch = _integer("epoch", epoch, 0)
        if not self.shuffle:
            return np.arange(len(self.dataset))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def batch_rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator batch ``index`` of ``epoch`` is transformed with.

        A child of the epoch's seed sequence, as ``SeedSequence.spawn``
        makes them: ``default_rng([seed, epoch, index])`` would not do, since
        a trailing zero in a seed list changes nothing, so batch 0 would
        repeat the permutation's stream.
        """
        epoch, index = _integer("epoch", epoch, 0), _integer("index", index, 0)
        sequence = np.random.SeedSequence([self.seed, epoch], spawn_key=(index,))
        return np.random.default_rng(sequence)

    def batches(self, epoch: int, start: int = 0, stop: int | None = None):
        """An iterator over the (images, labels) batches of ``epoch`` (0, 1, 2, ...).

        ``start`` skips the first batches without making them, to resume an
        epoch part-way: batch ``start`` is the same as in a full pass. ``stop``
        ends before batch ``stop`` (default: all the batches).
        """
        order = self.order(epoch)
        stop = len(self) if stop is None else _integer("stop", stop, 0)
        if stop > len(self):
            raise ValueError(f"DataLoader: stop must be at most the {len(self)} batches of an "
                             f"epoch, got {stop}")
        start = _integer("start", start, 0)
        if start > stop:
            served = "of an epoch" if stop == len(self) else f"up to stop={stop}"
            raise ValueError(f"DataLoader: start must be at most the {stop} batches {served}, "
                             f"got {start}")
        if self.prefetch == 0:
            return (self._batch(order, epoch, i) for i in range(start, stop))
        return self._prefetched(order, epoch, start, end=stop)

    def _batch(self, order: np.ndarray, epoch: int, index: int):
        indices = order[index * self.batch_size:(index + 1) * self.batch_size]
        low, high = part_bounds(len(indices), *self.part)
        if self.transform is None:
            indices = indices[low:high]
            low, high = 0, len(indices)
        # a transform draws for the whole batch at once: the part is cut from its result
        images = self.to_float(self.dataset.images[indices])
        if self.transform is not None:
            images = self.transform(images, self.batch_rng(epoch, index))
            if not isinstance(images, np.ndarray) or images.ndim != 4 \
                    or len(images) != len(indices):
                got = (f"shape {images.shape}" if isinstance(images, np.ndarray)
                       else type(images).__name__)
                raise ValueError(f"DataLoader: the transform must return a batch of shape "
                                 f"({len(indices)}, C, H, W), got {got}")
        return (np.ascontiguousarray(images[low:high], dtype=self.dtype),
                self.dataset.labels[indices[low:high]].astype(np.int64))

    def _prefetched(self, order: np.ndarray, epoch: int, start: int, end: int):
        """Batches made by a worker thread, at most ``prefetch`` ahead of the consumer.

        The worker checks the stop event between batches and while waiting
        for room in the queue, so a consumer that stops early (break, close,
        an exception) ends it within one batch. Its errors travel through the
        queue and are raised here, in the consumer.
        """
        ready = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def offer(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                for index in range(start, end):
                    if stop.is_set() or not offer(("batch", self._batch(order, epoch, index))):
                        return
                offer(("done", None))
            except BaseException as error:  # handed to the consumer, which raises it
                offer(("error", error))

        worker = threading.Thread(target=work, name=f"DataLoader-prefetch-epoch-{epoch}",
                                  daemon=True)

        def consume():
            worker.start()
            try:
                while True:
                    kind, value = ready.get()
                    if kind == "done":
                        return
                    if kind == "error":
                        raise value
                    yield value
            finally:
                stop.set()
                worker.join()

        return consume()
