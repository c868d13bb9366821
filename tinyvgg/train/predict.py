"""Trained models: predictions and their scores, a model loaded from a checkpoint, the
accuracy of checkpoints and of their ensemble, and the classes of image files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend
from ..data import transforms as T
from ..data.datasets import load_dataset
from ..data.loader import DataLoader
from ..io.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
from ..io.fileio import require_file
from ..models.imagenet import softmax
from ..tensor import no_grad, tensor
from .config import TrainConfig, parse_augment, saved_config
from .data import input_pipelines, loader_labels
from .model import build_model, require_finite


def predict_probabilities(model, loader: DataLoader, device: str = "cpu",
                          flip: bool = False) -> np.ndarray:
    """Softmax outputs (N, classes) of ``model`` in eval mode over one pass of ``loader``;
    with ``flip``, averaged with those of the mirrored images (the paper's test-time
    augmentation). A loader that serves parts of batches may serve empty ones (the
    outputs then have 0 rows for them)."""
    was_training = model.training
    model.eval()
    outputs = []
    with no_grad():
        for images, _ in loader.batches(0):
            if not len(images):
                continue
            probabilities = softmax(backend.to_numpy(model(tensor(images, device=device)).data))
            if flip:
                mirrored = np.ascontiguousarray(images[..., ::-1])
                probabilities = (probabilities + softmax(backend.to_numpy(
                    model(tensor(mirrored, device=device)).data))) / 2
            outputs.append(probabilities)
    model.train(was_training)
    return np.concatenate(outputs) if outputs else np.zeros((0, 0))


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and mean cross-entropy of predicted probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    return {"accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
            "loss": float(-np.log(np.maximum(picked, 1e-300)).mean())}


@dataclass
class TrainedModel:
    model: object
    config: TrainConfig
    data: dict
    path: Path


def load_trained(path, device: str = "cpu") -> TrainedModel:
    """A model from a training checkpoint (``checkpoint.npz`` or a snapshot); the stored
    weights' shapes are checked against the model before they are read."""
    meta = read_checkpoint_meta(path, require=("config", "data"))
    config = saved_config(meta, path, device=device)
    info = meta["data"]
    model = build_model(config, len(info["classes"]), info["in_channels"])
    shapes = {name: array.shape for name, array in model.state_dict().items()}
    checkpoint = load_checkpoint(path, require=("config", "data"), model_shapes=shapes)
    require_finite(path, checkpoint)
    try:
        model.load_state_dict(checkpoint.model)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    return TrainedModel(model.to(device).eval(), config, info, Path(path))


def evaluate_checkpoints(paths, dataset: str | None = None, data_dir=None, split="test",
                         batch_size: int = 256, device: str = "cpu", flip: bool = False) -> dict:
    """Accuracy of each checkpoint, and of the ensemble averaging their softmax outputs.

    ``flip`` also averages each model's outputs on the mirrored test images, which only
    makes sense for models trained with flips (not digits)."""
    members = [load_trained(path, device) for path in paths]
    if flip:
        unflipped = [str(m.path) for m in members
                     if "flip" not in parse_augment(m.config.augment, m.config.dataset)]
        if unflipped:
            raise ValueError(f"--flip averages over mirrored images, but "
                             f"{', '.join(unflipped)} was trained without flips (a mirrored "
                             f"digit is another picture); leave out --flip")
    first = members[0]
    for member in members[1:]:
        if member.data["classes"] != first.data["classes"]:
            raise ValueError(f"ensemble: {member.path} predicts classes {member.data['classes']}"
                             f", {first.path} predicts {first.data['classes']}")
    dataset = dataset or first.config.dataset
    data_dir = data_dir if data_dir is not None else first.config.data_dir
    rows, total = [], None
    cache = {}
    for member in members:
        stored = member.config.scale_max or member.config.image_size
        key = (dataset, split, stored)
        if key not in cache:
            cache[key] = load_dataset(dataset, split, data_dir, size=stored)
        images = cache[key]
        _, eval_tf = input_pipelines(member.config, images.images.shape[2],
                                     member.data["mean"], member.data["std"])
        loader = DataLoader(images, batch_size, shuffle=False, transform=eval_tf,
                            dtype=np.dtype(member.config.dtype))
        probabilities = predict_probabilities(member.model, loader, device, flip)
        rows.append({"checkpoint": str(member.path),
                     **scores(probabilities, loader_labels(loader))})
        total = probabilities if total is None else total + probabilities
    labels = loader_labels(loader)
    result = {"dataset": dataset, "split": split, "images": int(len(labels)), "flip": flip,
              "members": rows}
    if len(members) > 1:
        result["ensemble"] = scores(total / len(members), labels)
    return result


def read_image_file(path, in_channels: int) -> np.ndarray:
    """An image file as uint8 (C, H, W) with the checkpoint's channel count (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('predict: reading image files needs Pillow; '
                          'install it with: pip install -e ".[data]"') from None
    require_file(path, "predict: cannot read image", "an image file")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if in_channels == 1 else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"predict: cannot read image {path}: {error}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


#: a training mean below this says the training images are mostly dark background under
#: light strokes: MNIST's mean is 0.13 and Fashion-MNIST's 0.29, where photographs average
#: about 0.45 and dark ink on white paper far above 0.5
DARK_BACKGROUND_MEAN = 0.35
#: the ring of pixels taken for an image's background, as a fraction of its shorter side
#: (digits sit inside a margin: MNIST's is 4 pixels of 28)
BORDER_FRACTION = 0.1


def background_warning(image, training_mean, inverted: bool = False) -> str | None:
    """Why a prediction on ``image`` is likely wrong, or None: the model learnt light
    strokes on a dark background (``training_mean``, per channel in [0, 1], is low) but
    most of the image's border, its background, is light.

    ``image`` is uint8 (C, H, W) as the model gets it, after any inversion; ``inverted``
    says that one was asked for, which is then what to leave out."""
    if float(np.mean(training_mean)) >= DARK_BACKGROUND_MEAN:
        return None
    grey = np.asarray(image, dtype=np.float64).mean(axis=0)
    ring = max(1, int(min(grey.shape) * BORDER_FRACTION))
    border = np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(),
                             grey[ring:-ring, :ring].ravel(), grey[ring:-ring, -ring:].ravel()])
    if np.mean(border > 127.5) <= 0.5:
        return None
    trained = ("its background is light, but the model was trained on light strokes on a "
               "dark background, so the answer is likely wrong")
    if inverted:
        return f"with --invert {trained}; leave out --invert"
    return f"{trained}; for dark strokes on light paper add --invert"


def predict_files(checkpoints, files, device: str = "cpu", invert: bool = False,
                  top: int = 3) -> list[dict]:
    """Top classes for each image file, averaging the softmax of all ``checkpoints``; each
    row's ``warning`` names the file when its background is not the one the model learnt
    (see :func:`background_warning`), else is None."""
    members = [load_trained(path, device) for path in checkpoints]
    total = None
    warnings = {}
    for member in members:
        stored = member.data["stored_size"]
        batch = []
        for index, path in enumerate(files):
            image = read_image_file(path, member.data["in_channels"])
            if invert:  # dark strokes on white paper -> MNIST's white on black
                image = 255 - image
            reason = background_warning(image, member.data["mean"], invert)
            if reason is not None:
                warnings.setdefault(index, f"{path}: {reason}")
            resized = T.resize(image.transpose(1, 2, 0), (stored, stored))
            batch.append(np.clip(np.rint(resized), 0, 255).astype(np.uint8).transpose(2, 0, 1))
        _, eval_tf = input_pipelines(member.config, stored, member.data["mean"],
                                     member.data["std"])
        x = eval_tf(np.stack(batch).astype(np.float64) / 255.0, np.random.default_rng(0))
        x = np.ascontiguousarray(x, dtype=np.dtype(member.config.dtype))
        with no_grad():
            logits = member.model(tensor(x, device=device))
        probabilities = softmax(backend.to_numpy(logits.data))
        total = probabilities if total is None else total + probabilities
    total /= len(members)
    classes = members[0].data["classes"]
    results = []
    for index, (path, row) in enumerate(zip(files, total)):
        order = np.argsort(-row)[:top]
        results.append({"file": str(path),
                        "top": [{"class": classes[i], "probability": float(row[i])}
                                for i in order],
                        "warning": warnings.get(index)})
    return results
