"""``tinyvgg experiment augment``: what the network sees during training.

A gallery: a few training images, each shown as stored (padded or cropped to
the input size, as evaluation sees it), then as drawn by every augmentation of
``tinyvgg train --augment`` on its own, then by the data set's default
pipeline (``--augment auto``). Every column is built by the training code
itself (:func:`tinyvgg.train.data.input_pipelines`), with the settings a run
uses, so the gallery shows what a run trains on and cannot drift from it; only
the final normalisation is left out, so the pixels stay in [0, 1] and can be
shown as they are.

Digits are grey: the colour augmentations (``rgb``, ``hue-sat``) are refused
for them, and ``scale`` needs images stored larger than the input, which digits
are not, so their gallery leaves those three out. An image folder
(``--dataset folder --data-dir ROOT``) shows all seven; its images are stored
at twice the input size and ``scale`` draws S from [32, 64], the VGG paper's
range (256 to 512 for 224 crops) scaled down.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend
from ..data import transforms as T
from ..data.datasets import load_dataset
from ..io.plotting import pyplot, save_png
from ..io.texttable import format_table
from ..random import check_seed
from ..train.config import AUGMENTATIONS, DIGIT_DATASETS, RGB_AUGMENTATIONS, TrainConfig
from ..train.config import parse_augment
from ..train.data import input_pipelines

NAME = "augment"
IMAGES = 4
INPUT_SIZE = 32
#: an image folder's multi-scale range in the gallery: S in [32, 64] for 32x32 crops
FOLDER_SCALE = (INPUT_SIZE, 2 * INPUT_SIZE)


def augmentations_for(dataset: str) -> list[str]:
    """The ``--augment`` names that change the images of ``dataset``, in pipeline order."""
    names = [name for name in AUGMENTATIONS
             if not (dataset in DIGIT_DATASETS and name in (*RGB_AUGMENTATIONS, "scale"))]
    order = ("scale", "crop", "flip", "jitter", "hue-sat", "rgb", "rotate", "erase")
    return sorted(names, key=order.index)


def _config(dataset: str, data_dir, augment: str) -> TrainConfig:
    scales = {} if dataset in DIGIT_DATASETS else dict(zip(("scale_min", "scale_max"),
                                                           FOLDER_SCALE))
    return TrainConfig(dataset=dataset, data_dir=data_dir, image_size=INPUT_SIZE,
                       augment=augment, **scales)


def gallery(dataset: str = "mnist", data_dir=None, images: int = IMAGES,
            seed: int = 0) -> dict:
    """The gallery's pictures, without drawing them.

    Returns ``classes`` (the class name of each picked image), ``columns`` (a
    list of (title, the training transforms but the normalisation, float (k, C, 32, 32)
    batch in [0, 1]), the
    first the stored images, then one per augmentation, then the default
    pipeline). The k images are picked at random by ``seed`` from the training
    split; column i is drawn with ``default_rng([seed, i])``."""
    seed = check_seed(f"experiment {NAME}", seed)
    if not isinstance(images, int) or images < 1:
        raise ValueError(f"experiment {NAME}: images must be a positive integer, got {images!r}")
    stored_size = FOLDER_SCALE[1] if dataset not in DIGIT_DATASETS else None
    data = load_dataset(dataset, "train", data_dir, size=stored_size)
    picked = np.sort(np.random.default_rng(seed).choice(len(data), min(images, len(data)),
                                                        replace=False))
    batch = T.ToFloat()(data.images[picked])
    channels, size = batch.shape[1], batch.shape[2]
    identity = ([0.0] * channels, [1.0] * channels)  # Normalize that changes nothing

    def pipeline(augment):
        return input_pipelines(_config(dataset, data_dir, augment), size, *identity)

    def steps(compose):
        return [t for t in compose.transforms if not isinstance(t, T.Normalize)]

    evaluate = pipeline("none")[1]
    columns = [("stored", steps(evaluate), evaluate(batch))]
    default = parse_augment("auto", dataset)
    for name in augmentations_for(dataset) + ["auto"]:
        train_transform = pipeline(name)[0]
        title = f"auto: {','.join(default)}" if name == "auto" else name
        drawn = train_transform(batch, np.random.default_rng([seed, len(columns)]))
        columns.append((title, steps(train_transform), drawn))
    return {"classes": [data.classes[label] for label in data.labels[picked]],
            "columns": columns}


def _figure(dataset: str, classes, columns, out: Path) -> Path:
    plt = pyplot(f"experiment {NAME}")
    rows, cols = len(classes), len(columns)
    figure, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows + 0.6),
                                squeeze=False)
    for c, (title, _, batch) in enumerate(columns):
        for r in range(rows):
            ax = axes[r, c]
            # the RGB shift is not clipped: show what lies outside [0, 1] at its limit
            image = np.clip(batch[r].transpose(1, 2, 0), 0, 1)
            if image.shape[2] == 1:
                ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(classes[r], fontsize=8)
    figure.suptitle(f"{dataset}: each training image as stored, under each augmentation "
                    f"alone, and under the default pipeline", fontsize=10)
    figure.tight_layout()
    return save_png(figure, out / f"augment-{dataset}.png")


def run(out: Path, seed: int = 0, device: str = "cpu", log=print, dataset: str = "mnist",
        data_dir=None) -> dict:
    out = Path(out)
    backend.check_device(device)  # the transforms run on the CPU, as in training
    result = gallery(dataset, data_dir, seed=seed)
    columns = result["columns"]
    stored = columns[0][2]
    log(f"{len(result['classes'])} {dataset} training images ({', '.join(result['classes'])}), "
        f"drawn by each --augment on its own and by the default pipeline")
    rows, changes = [], {}
    for title, steps, batch in columns[1:]:
        changes[title] = float(np.abs(batch - stored).mean())
        rows.append((title, f"{changes[title]:.3f}", ", ".join(map(repr, steps))))
    for line in format_table(("--augment", "mean |change|", "training transforms"), rows):
        log(line)
    if dataset in DIGIT_DATASETS:
        log("Digits are grey: rgb and hue-sat are refused for them, and scale needs images "
            "stored larger than the input; --dataset folder --data-dir ROOT shows all seven.")
    figure = _figure(dataset, result["classes"], columns, out)
    return {"dataset": dataset, "classes": result["classes"],
            "columns": [title for title, _, _ in columns], "changes": changes,
            "figures": [str(figure)]}
