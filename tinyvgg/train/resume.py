"""The resume policy: which checkpoint a run may continue from, what a resumed run may
change, and when there is nothing left to do.

Resuming with a larger ``--epochs`` continues the schedule where it stands
(constant, step, plateau, warm-restarts); a cosine schedule, which reaches 0
at its planned end, cannot be extended, nor can a run that averages its last
epochs' weights (``--swa-epochs``). Resuming a finished run changes nothing.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from ..io.checkpoint import RESUME_META, load_checkpoint, read_checkpoint_meta
from .config import EXTENDABLE_SCHEDULES, TrainConfig, command_line, saved_config
from .model import require_finite
from .records import epochs_text

#: what a resumed run may change: how long it runs, where, how it shows progress, and how
#: its ranks send gradients (which changes no result)
RESUMABLE_OVERRIDES = ("epochs", "device", "prefetch", "bucket_mb", "overlap")


def read_run_meta(path) -> dict:
    """The metadata of the checkpoint a run continues from, without reading its arrays
    (what the command line needs to rebuild the run's settings): it holds what resuming
    reads back, and its settings are valid."""
    meta = read_checkpoint_meta(path, require=RESUME_META)
    saved_config(meta, path, device="cpu")  # the run's GPU may be elsewhere
    return meta


def load_run_checkpoint(path):
    """The checkpoint to continue a run from, checked before any training: it holds what
    resuming reads back, its settings are valid and its weights finite. (Whether the
    continued run's --epochs leave anything to do is the resume policy's question.)"""
    checkpoint = load_checkpoint(path, require=RESUME_META)
    saved_config(checkpoint.meta, path, device="cpu")  # the run's GPU may be elsewhere
    require_finite(path, checkpoint)
    return checkpoint


def resumed_config(checkpoint_path, overrides: dict) -> TrainConfig:
    """The settings of the run saved in ``checkpoint_path``, with ``overrides`` (the
    TrainConfig fields given on the command line, None left out): only those named in
    RESUMABLE_OVERRIDES may differ from the run's, and ``out`` is the checkpoint's folder
    unless given."""
    saved = read_run_meta(checkpoint_path)["config"]  # train() reads the arrays
    fixed = {k: v for k, v in overrides.items()
             if k not in RESUMABLE_OVERRIDES and k != "out" and v != saved.get(k)}
    if fixed:
        wrong = ", ".join(f"--{k.replace('_', '-')} {v} (the run has {saved.get(k)})"
                          for k, v in fixed.items())
        allowed = ", ".join(f"--{k.replace('_', '-')}" for k in RESUMABLE_OVERRIDES)
        raise ValueError(f"--resume continues a run as it was configured; only "
                         f"{allowed} may change, got {wrong}")
    saved.update({k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES})
    if overrides.get("out") is None:
        saved["out"] = str(Path(checkpoint_path).parent)
    else:
        saved["out"] = overrides["out"]
    return TrainConfig.from_dict(saved)


def check_resume(config: TrainConfig, meta: dict, path) -> bool:
    """Whether the checkpoint ``path`` ends a complete run of ``config.epochs`` epochs
    (nothing to do); refuses an ``--epochs`` the run cannot continue to."""
    done, batch = meta["epoch"], meta["batch"]
    needed = done + (1 if batch else 0)
    if config.epochs < needed:
        raise ValueError(f"--epochs {config.epochs} ends before where checkpoint {path} "
                         f"stands ({position(done, batch)}); give --epochs {needed} or more")
    def start_over() -> str:
        fresh = fresh_folder(config.output_dir, f"{config.epochs}epochs")
        return f"start over: {command_line(config)} --out {shlex.quote(str(fresh))}"

    planned = meta["config"]["epochs"]
    if config.swa_epochs and config.epochs != planned:
        raise ValueError(
            f"--epochs {config.epochs}: this run averages its weights over its last "
            f"{epochs_text(config.swa_epochs)} (--swa-epochs), which end at epoch {planned}; "
            f"another end would move that window, so the run cannot change its length. To "
            f"train {epochs_text(config.epochs)}, {start_over()}")
    schedule = meta["scheduler"]
    if schedule.get("kind") == "cosine" and config.epochs > schedule["T_max"]:
        raise ValueError(
            f"--epochs {config.epochs}: this run's cosine schedule takes the learning rate "
            f"to 0 at the end of its {epochs_text(schedule['T_max'])} (past them it would rise "
            f"again), so it cannot be extended; a resumed run can extend the schedules "
            f"{', '.join(EXTENDABLE_SCHEDULES)}. To train {epochs_text(config.epochs)} with a "
            f"cosine schedule, {start_over()}")
    return done == config.epochs and batch == 0 and meta.get("test") is not None


def complete_message(path, meta: dict) -> str:
    test = meta["test"]
    if meta["config"].get("swa_epochs"):
        longer = "its weights are averaged over its last epochs, so training longer needs a new run"
    elif meta["scheduler"].get("kind") in EXTENDABLE_SCHEDULES:
        longer = "a larger --epochs continues it"
    else:
        longer = "its cosine schedule has ended, so training longer needs a new run"
    return (f"the run saved in {path} is complete: {epochs_text(meta['epoch'])}, test accuracy "
            f"{100 * test['accuracy']:.2f}%; nothing to do ({longer})")


def position(epoch: int, batch: int) -> str:
    return f"after epoch {epoch}" if batch == 0 else f"epoch {epoch + 1}, batch {batch}"


def fresh_folder(out: Path, suffix: str) -> Path:
    """A folder beside ``out`` named after it and ``suffix`` that does not exist yet, for
    the advice to start a new run."""
    base = out if out.name not in ("", ".", "..") else out.resolve()
    candidate, number = base.with_name(f"{base.name}-{suffix}"), 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{suffix}-{number}")
        number += 1
    return candidate
