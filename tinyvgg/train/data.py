"""A run's data: the training, validation and test loaders, and the input pipelines
(augmentation, padding, normalisation by the training images' channel statistics)
that turn stored images into network inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import transforms as T
from ..data.datasets import load_dataset
from ..data.loader import DataLoader
from .config import TrainConfig, parse_augment


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1]."""
    n = images.shape[0]
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, n, 4096):  # in chunks, so a big set is not copied to float at once
        chunk = images[start:start + 4096].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk ** 2).sum(axis=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return mean.tolist(), std.tolist()


def input_pipelines(config: TrainConfig, stored_size: int, mean, std):
    """(training transform, evaluation transform) from stored images to network inputs."""
    size = config.image_size
    augment = parse_augment(config.augment, config.dataset)
    pad = max(0, (size - stored_size) // 2)
    train, evaluate = [], []
    if pad:
        train.append(T.Pad(pad))
        evaluate.append(T.Pad(pad))
    padded = stored_size + 2 * pad
    if "scale" in augment:
        low = config.scale_min or padded
        high = config.scale_max or padded
        train.append(T.RandomScaleCrop(size, low, high))
    elif "crop" in augment:
        # shifts of up to the padding digits already have (2 pixels), else 4 as for CIFAR
        train.append(T.RandomCrop(size, padding=(pad or 4) if padded == size else 0))
    elif padded != size:
        train.append(T.CenterCrop(size))
    if padded != size:
        evaluate.append(T.CenterCrop(size))
    if "flip" in augment:
        train.append(T.RandomHorizontalFlip())
    if "jitter" in augment:
        train.append(T.ColorJitter(brightness=0.2, contrast=0.2))
    if "hue-sat" in augment:
        train.append(T.HueSaturationJitter(hue=0.05, saturation=0.05))
    if "rgb" in augment:
        train.append(T.RGBShift(0.1))
    if "rotate" in augment:
        # after the colour changes, so the corners it brings in stay exactly black
        train.append(T.RandomRotation(config.rotate_degrees, fill=0.0))
    if "erase" in augment:
        # last, so nothing moves or recolours the noise it paints
        train.append(T.RandomErasing())
    train.append(T.Normalize(mean, std))
    evaluate.append(T.Normalize(mean, std))
    return T.Compose(train), T.Compose(evaluate)


@dataclass
class RunData:
    train: DataLoader
    train_unaugmented: DataLoader  # the training images as the network sees test images
    val: DataLoader | None
    test: DataLoader
    classes: list
    in_channels: int
    stored_size: int
    mean: list
    std: list


def prepare_data(config: TrainConfig, part: tuple[int, int] = (0, 1)) -> RunData:
    """The run's loaders; with ``part`` = (k, ranks), each serves part k of every batch
    (``DataLoader``'s part), for rank k of a run on several ranks."""
    stored = config.scale_max or config.image_size
    full = load_dataset(config.dataset, "train", config.data_dir, size=stored)
    test = load_dataset(config.dataset, "test", config.data_dir, size=stored)
    if config.val_size >= len(full):
        raise ValueError(f"train: --val-size {config.val_size} leaves no training images "
                         f"({config.dataset} has {len(full)})")
    if config.val_size:
        train_set, val_set = full.split(config.val_size, seed=config.seed)
    else:
        train_set, val_set = full, None
    if config.limit is not None:
        train_set = train_set.subset(np.arange(min(config.limit, len(train_set))))
    if train_set.images.shape[2] != train_set.images.shape[3]:
        raise ValueError(f"train: expected square images, got {train_set.images.shape[2:]}")
    mean, std = channel_statistics(train_set.images)
    train_tf, eval_tf = input_pipelines(config, train_set.images.shape[2], mean, std)
    dtype = np.dtype(config.dtype)
    eval_batch = max(config.batch_size, 256)

    def evaluation_loader(dataset):
        return DataLoader(dataset, eval_batch, shuffle=False, seed=config.seed,
                          transform=eval_tf, prefetch=config.prefetch, dtype=dtype, part=part)
    return RunData(
        train=DataLoader(train_set, config.batch_size, shuffle=True, seed=config.seed,
                         drop_last=False, transform=train_tf, prefetch=config.prefetch,
                         dtype=dtype, part=part),
        train_unaugmented=evaluation_loader(train_set),
        val=evaluation_loader(val_set) if val_set is not None else None,
        test=evaluation_loader(test),
        classes=list(full.classes), in_channels=full.images.shape[1],
        stored_size=full.images.shape[2], mean=mean, std=std)


def loader_labels(loader: DataLoader) -> np.ndarray:
    return np.asarray(loader.dataset.labels)
