"""What a run writes and prints: its output folder, ``metrics.csv`` and ``metrics.json``,
``curves.png``, and the lines it logs for each epoch and on resuming."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..io.fileio import atomic_write, remove_stale_temporaries, writable_folder
from ..io.plotting import pyplot, save_png
from .config import TrainConfig

#: what a run writes into its folder (fnmatch patterns), for removing stale temporaries
RUN_FILES = ("checkpoint.npz", "snapshot-epoch*.npz", "metrics.csv", "metrics.json",
             "curves.png", "model.npz", "write-probe")


class OutputWriteError(OSError):
    """A file of the run (the output folder, a checkpoint, the metrics, the curves)
    could not be written; the message names it and says why."""


def prepare_output_folder(config: TrainConfig, out: Path, log) -> None:
    """Make sure the run can write into ``out`` before the first batch is trained,
    and remove the temporary files an earlier killed write left there."""
    try:
        writable_folder(out)
        removed = remove_stale_temporaries(out, RUN_FILES)
    except OSError as error:
        where = f"--out {out}" if config.out else \
            f"the output folder {out} (choose another with --out)"
        raise OutputWriteError(f"cannot write to {where}: {error.strerror or error}") from None
    if removed:
        log(f"removed {len(removed)} temporary file(s) that an interrupted write left in "
            f"{out}: {', '.join(path.name for path in removed)}")


METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                  "images_per_second", "seconds")


def write_metrics(out: Path, config: TrainConfig, history: list, test: dict | None,
                  extra: dict | None = None) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write(out / "metrics.csv", text.getvalue())
    document = {"config": config.to_dict(), "history": history, "test": test, **(extra or {})}
    atomic_write(out / "metrics.json", json.dumps(document, indent=1) + "\n")


def plot_curves(out: Path, history: list, title: str) -> Path | None:
    """Loss, accuracy and learning rate per epoch as ``curves.png`` (needs matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            axes[0].plot(epochs, values, marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        values = [None if row.get(key) is None else 100 * row[key] for row in history]
        if any(v is not None for v in values):
            axes[1].plot(epochs, values, marker="o", label=label)
    axes[2].plot(epochs, [row["lr"] for row in history], marker="o")
    for axis, name in zip(axes, ("cross-entropy", "accuracy (%)", "learning rate")):
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, out / "curves.png")


def epochs_text(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"


def resume_line(path, config: TrainConfig, meta: dict, lr: float) -> str:
    epoch, batch = meta["epoch"], meta["batch"]
    if epoch == config.epochs:
        return f"resuming {path}: all {epochs_text(epoch)} are trained; the final test is left"
    line = f"resuming {path} at epoch {epoch + 1}, batch {batch}"
    planned = meta["config"]["epochs"]
    if config.epochs != planned:
        line += (f"; --epochs {config.epochs} (the run had {planned}): the "
                 f"{config.schedule} schedule carries on from learning rate {lr:.4g}")
    return line


def run_title(config: TrainConfig) -> str:
    bn = " + BN" if config.batch_norm else ""
    return f"{config.model}{bn}, width {config.width:g}, on {config.dataset}"


def epoch_line(row: dict) -> str:
    line = (f"epoch {row['epoch']:>3}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"acc {100 * row['train_accuracy']:.2f}%")
    if row["val_accuracy"] is not None:
        line += f"  val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}%"
    return line + f"  {row['images_per_second']:.0f} img/s  {row['seconds']:.0f} s"
