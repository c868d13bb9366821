"""Images in, batches out.

``datasets``: MNIST, Fashion-MNIST, idx folders and image folders as
in-memory :class:`Dataset` objects; ``transforms``: per-image resizing and
the loader's batch augmentations; ``loader``: the :class:`DataLoader`, whose
batches are a pure function of (seed, epoch).

    from tinyvgg.data import DataLoader, load_dataset, transforms as T

    train = load_dataset("mnist", "train")
    loader = DataLoader(train, batch_size=128, seed=0,
                        transform=T.Compose([T.Pad(2), T.RandomCrop(32, padding=2)]))
    for images, labels in loader.batches(epoch=0):
        ...
"""
from . import transforms
from .datasets import (DATASETS, FASHION_MNIST_CLASSES, MNIST_CLASSES, Dataset,
                       DatasetNotFoundError, load_dataset, load_fashion_mnist, load_idx_dir,
                       load_image_folder, load_mnist, read_idx, write_idx)
from .loader import DataLoader

__all__ = ["Dataset", "DatasetNotFoundError", "DataLoader", "DATASETS", "MNIST_CLASSES",
           "FASHION_MNIST_CLASSES", "load_dataset", "load_mnist", "load_fashion_mnist",
           "load_idx_dir", "load_image_folder", "read_idx", "write_idx", "transforms"]
