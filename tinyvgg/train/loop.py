"""The training loop: one run of a VGG on real images, epoch by epoch, with its validation,
its checkpoints, Ctrl-C and divergence.

One run is a :class:`TrainConfig`. :func:`train` builds the data, the model,
SGD and the schedule from it, then repeats for each epoch::

    for each mini-batch (x, y):                 # shuffled and augmented per (seed, epoch)
        loss = cross_entropy(model(x), y)
        model.zero_grad(); loss.backward()      # the engine's backprop
        optimizer.step()                        # SGD with momentum and weight decay
    validate; step the schedule; write metrics, curves and a checkpoint

With ``--swa-epochs K`` the steps of the last K epochs also feed a running mean
of the weights (:class:`tinyvgg.optim.WeightAverage`), and the run ends on that
mean, its batch-norm statistics recomputed from the training images.

Exact resumption rests on one rule: every random draw (the shuffle, each
batch's augmentation, each batch's dropout masks) is a pure function of
``(seed, epoch, batch)``. A checkpoint therefore only needs the weights,
the optimiser and scheduler state (and the weight average, if any) and the
position ``(epoch, batch)``;
``--resume`` skips to that position and continues bit for bit.

On several ranks (``mpiexec -n N``, ``group`` from
:func:`tinyvgg.train.distributed.world`) every global batch is split over the
ranks, their gradients are summed before each step, and only rank 0 prints and
writes (:mod:`.distributed`); the run is the one a single process would make.

Ctrl-C is caught between batches: the run saves a checkpoint at the current
batch and stops (a second Ctrl-C stops at once); during validation or the
final test it stops when that pass ends. A training or validation loss that
turns NaN or infinite, or weights or batch-norm statistics that do, stop the
run with :class:`TrainingDiverged`: every checkpoint is checked before it is
written, so the one kept is always finite.
"""
from __future__ import annotations

import math
import shlex
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import backend
from .. import functional as F
from .. import optim, random
from . import distributed
from ..io.checkpoint import CheckpointError, save_checkpoint
from ..tensor import tensor
from .config import TrainConfig, command_line
from .data import loader_labels, prepare_data
from .model import build_model, non_finite_state, recalibrate_batch_norm
from .predict import predict_probabilities, scores
from .records import (OutputWriteError, epoch_line, epochs_text, plot_curves,
                      prepare_output_folder, resume_line, run_title, write_metrics)
from .resume import (check_resume, complete_message, fresh_folder, load_run_checkpoint,
                     position)


class TrainingDiverged(RuntimeError):
    """The training loss, the validation loss, the weights or the batch-norm statistics
    became NaN or infinite."""


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The dropout seed of one batch: a pure function of where the run is."""
    return int(np.random.SeedSequence([seed, epoch, index, 0xD0]).generate_state(
        1, np.uint64)[0])


class _InterruptFlag:
    """Turns the first Ctrl-C into a request to stop after the current batch."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class RunResult:
    status: str              # "finished", "interrupted" or "complete" (resumed, nothing to do)
    epoch: int               # completed epochs
    history: list
    test: dict | None
    output_dir: Path
    checkpoint: Path | None
    message: str = ""


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="batch", leave=True, dynamic_ncols=True)


def train(config: TrainConfig, resume=None, progress: bool = True, log=print,
          on_batch=None, group=None) -> RunResult:
    """Run (or continue, from the checkpoint file ``resume``) one training run.

    ``on_batch(epoch, index, loss)`` is called after every optimiser step (on every
    rank, with the global batch's loss). ``group`` (``distributed.world()``) is the
    ranks that train this model together, or None for a process on its own.
    """
    try:
        return _train(config, resume, progress, log, on_batch, group)
    finally:
        random.set_first_sample(0)


def _train(config: TrainConfig, resume, progress: bool, log, on_batch,
           group) -> RunResult:
    lead = group is None or group.rank == 0  # the rank that prints and writes
    if not lead:
        log, progress = (lambda *args, **kwargs: None), False
    began = time.perf_counter()
    meta = None
    out = config.output_dir
    if resume is not None:
        checkpoint = load_run_checkpoint(resume)
        meta = checkpoint.meta
        if check_resume(config, meta, resume):
            message = complete_message(resume, meta)
            log(message)
            return RunResult("complete", meta["epoch"], meta["history"], meta["test"], out,
                             Path(resume), message)
    if group is not None:
        distributed.check_batch_size(config.batch_size, group.size)
    # a wrong --data-dir leaves no empty run folder behind
    data = prepare_data(config, (0, 1) if group is None else (group.rank, group.size))
    if group is not None:
        distributed.check_same_run(group, _run_settings(config, data, resume))
        devices = group.allgather(group.describe())
    if lead:
        prepare_output_folder(config, out, log)
    random.manual_seed(config.seed)
    model = build_model(config, len(data.classes), data.in_channels).to(config.device)
    optimizer = optim.SGD(model.named_parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.nesterov)
    scheduler = optim.make_scheduler(config.schedule, optimizer, config.epochs,
                                     step_size=config.step_size, patience=config.patience,
                                     T_0=config.restart_period, T_mult=config.restart_mult)
    # --swa-epochs: the mean of the weights after every step from epoch swa_start on
    average = optim.WeightAverage(model.named_parameters()) if config.swa_epochs else None
    swa_start = config.epochs - config.swa_epochs
    epoch, start_batch, history, sums = 0, 0, [], _fresh_sums()
    earlier_seconds = 0.0  # wall time of the sessions before a resume
    last_good = None  # (path, epoch, batch) of the newest checkpoint known to be finite
    if meta is not None:
        earlier_seconds = meta.get("wall_seconds", 0.0)
        model.load_state_dict(checkpoint.model)
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(meta["scheduler"])
        if average is not None:
            try:
                average.load_state_dict(checkpoint.average)
            except ValueError as error:
                raise CheckpointError(f"checkpoint {resume}: its weight average: "
                                      f"{error}") from None
        epoch, start_batch = meta["epoch"], meta["batch"]
        history, sums = meta["history"], meta["sums"]
        last_good = (Path(resume), epoch, start_batch)
        log(resume_line(resume, config, meta, optimizer.lr))
    ranks = 1 if group is None else group.size
    buckets = None
    if group is not None:
        distributed.broadcast_state(group, model)  # rank 0's initial (or resumed) weights
        if config.sync_bn:
            distributed.synchronise_batch_norm(group, model)
        buckets = distributed.GradientBuckets(model.parameters(), group, config.bucket_mb,
                                              config.overlap)
    restarts = set(scheduler.restart_epochs(config.epochs)) if hasattr(
        scheduler, "restart_epochs") else set()
    info = {"classes": data.classes, "in_channels": data.in_channels,
            "stored_size": data.stored_size, "mean": data.mean, "std": data.std}

    def checkpoint_meta(epoch_, batch_):
        return {"config": config.to_dict(), "epoch": epoch_, "batch": batch_,
                "scheduler": scheduler.state_dict(), "history": history, "sums": sums,
                "data": info, "wall_seconds": wall_seconds(), "ranks": ranks}

    def wall_seconds():
        return earlier_seconds + time.perf_counter() - began

    def kept_checkpoint(resumable: bool = True) -> str:
        if last_good is None:
            return "no checkpoint of this run has been written"
        path, epoch_, batch_ = last_good
        kept = f"the last checkpoint, {path} ({position(epoch_, batch_)}), is whole"
        if resumable:
            kept += f"; continue with: tinyvgg train --resume {shlex.quote(str(path))}"
        return kept

    def diverged(what: str) -> TrainingDiverged:
        # A resumed run keeps its learning rate and repeats its steps bit for bit, so
        # resuming would diverge again: the advice is a fresh run with a lower one.
        lower = config.lr / 10
        fresh = fresh_folder(out, f"lr{lower:g}")
        if last_good is None:
            kept = "No good checkpoint of this run was written. "
        else:
            kept = (f"The last good checkpoint is {last_good[0]} "
                    f"({position(*last_good[1:])}), but a resumed run keeps its learning "
                    f"rate. ")
        return TrainingDiverged(
            f"{what}: training stopped. {kept}Start over with a lower --lr (this run's is "
            f"{config.lr:g}): {command_line(replace(config, lr=lower))} "
            f"--out {shlex.quote(str(fresh))}")

    def write(what, writer):
        """Run ``writer()``, which writes the file(s) ``what``; a failure says which and why.
        Only rank 0 writes."""
        if not lead:
            return None
        try:
            return writer()
        except OSError as error:
            raise OutputWriteError(f"cannot write {what}: {error.strerror or error}; "
                                   f"{kept_checkpoint()}") from None

    def save(path, epoch_, batch_, when: str, test=None):
        """Write a checkpoint of the run at (epoch_, batch_), once its state is checked
        (on every rank, whose states are rank 0's; rank 0 writes)."""
        model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
        average_state = None if average is None else average.state_dict()
        bad = non_finite_state(model_state, optimizer_state, average_state)
        if bad:
            raise diverged(f"{bad} became NaN or infinite {when}")
        if not lead:
            return path
        meta_ = checkpoint_meta(epoch_, batch_)
        if test is not None:
            meta_["test"] = test
        return write(path, lambda: save_checkpoint(path, model_state, optimizer_state, meta_,
                                                   average_state))

    def agreed(flag) -> bool:
        """Whether ``flag`` is set here or, on several ranks, on any of them."""
        return bool(flag) if group is None else group.any(flag)

    def probabilities(loader):
        found = predict_probabilities(model, loader, config.device)
        return found if group is None else distributed.gather_parts(group, found, loader)

    latest = out / "checkpoint.npz"
    metrics_files = f"{out / 'metrics.csv'} and metrics.json"
    batches_per_epoch = distributed.whole_batches(group, data.train)
    warmup_steps = math.ceil(config.warmup_epochs * batches_per_epoch)
    if meta is None:
        log(f"{command_line(config)}\n  {model.name}: "
            f"{sum(p.data.size for p in model.parameters()):,} parameters; "
            f"{len(data.train.dataset):,} training, "
            f"{0 if data.val is None else len(data.val.dataset):,} validation and "
            f"{len(data.test.dataset):,} test images; output in {out}")
    if group is not None:
        log(_ranks_line(config, group, devices, len(buckets.buckets), data.train,
                        batches_per_epoch, None if meta is None else meta.get("ranks", 1)))
    model.train()
    with _InterruptFlag() as interrupt:
        while epoch < config.epochs:
            bar = _progress_bar(batches_per_epoch, f"epoch {epoch + 1}/{config.epochs}",
                                progress)
            if bar is not None:
                bar.update(start_batch)
            started = time.perf_counter()
            images_seen = 0
            batches = data.train.batches(epoch, start=start_batch, stop=batches_per_epoch)
            averaging = average is not None and epoch >= swa_start
            for index, (images, labels) in enumerate(batches, start=start_batch):
                first, _ = distributed.batch_share(group, data.train, index)
                random.set_first_sample(first)  # dropout numbers samples in the global batch
                random.manual_seed(batch_seed(config.seed, epoch, index))
                if scheduler.per_batch:
                    scheduler.step(epoch + index / batches_per_epoch)
                if warmup_steps:
                    optimizer.lr = scheduler.get_last_lr() * optim.warmup_factor(
                        epoch * batches_per_epoch + index, warmup_steps)
                if averaging and config.swa_lr is not None:
                    optimizer.lr = config.swa_lr
                if not optimizer.lr > 0:
                    if bar is not None:
                        bar.close()
                    raise ValueError(
                        f"the learning rate is {optimizer.lr:g} at epoch {epoch + 1}, batch "
                        f"{index} ({config.schedule} schedule): a step at learning rate 0 "
                        f"would change only batch-norm statistics, so training stops here; "
                        f"{kept_checkpoint(resumable=False)}")
                logits = model(tensor(images, device=config.device))
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
                model.zero_grad()
                predicted = backend.to_numpy(logits.data).argmax(axis=1)
                counts = [float(loss.item()) * len(labels), int((predicted == labels).sum()),
                          len(labels), interrupt.requested]
                if group is None:
                    loss.backward()
                else:
                    # this rank's share of the global batch's mean loss: the ranks'
                    # gradients then sum to the gradient of the global batch's
                    buckets.begin()
                    loss.backward(np.asarray(len(labels) / data.train.batch_size_of(index),
                                             dtype=loss.dtype))
                    buckets.finish()
                    counts = group.sum_numbers(counts).tolist()
                loss_value = float(loss.item()) if group is None else counts[0] / counts[2]
                if not math.isfinite(loss_value):
                    if bar is not None:
                        bar.close()
                    raise diverged(f"loss became {loss_value} at epoch {epoch + 1}, "
                                   f"batch {index}")
                optimizer.step()
                if averaging:
                    average.update()
                sums["loss"] += counts[0]
                sums["correct"] += int(counts[1])
                sums["count"] += int(counts[2])
                images_seen += int(counts[2])
                if bar is not None:
                    rate = images_seen / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.4f}",
                                    acc=f"{100 * sums['correct'] / sums['count']:.2f}%",
                                    img_s=f"{rate:.0f}", refresh=False)
                    bar.update(1)
                if on_batch is not None:
                    on_batch(epoch, index, loss_value)
                # Ctrl-C: on several ranks, on any of them (known once per batch)
                if interrupt.requested if group is None else counts[3]:
                    if bar is not None:
                        bar.close()
                    path = save(latest, epoch, index + 1,
                                f"by epoch {epoch + 1}, batch {index + 1} (at Ctrl-C)")
                    message = (f"interrupted at epoch {epoch + 1}, batch {index + 1}; saved "
                               f"{path}. Continue with: tinyvgg train --resume "
                               f"{shlex.quote(str(path))}")
                    log(message)
                    return RunResult("interrupted", epoch, history, None, out, path, message)
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - started
            row = {"epoch": epoch + 1, "lr": optimizer.lr,
                   "train_loss": sums["loss"] / max(sums["count"], 1),
                   "train_accuracy": sums["correct"] / max(sums["count"], 1),
                   "val_loss": None, "val_accuracy": None,
                   "images_per_second": images_seen / max(seconds, 1e-9),
                   "seconds": seconds}
            if group is not None:  # rank 0's batch-norm statistics on every rank
                distributed.broadcast_state(group, model)
            if data.val is not None:
                val = scores(probabilities(data.val), loader_labels(data.val))
                row["val_loss"], row["val_accuracy"] = val["loss"], val["accuracy"]
            log(epoch_line(row))
            if row["val_loss"] is not None and not math.isfinite(row["val_loss"]):
                raise diverged(f"validation loss became {row['val_loss']} after epoch "
                               f"{epoch + 1}")
            history.append(row)
            if not scheduler.per_batch:
                optimizer.lr = scheduler.get_last_lr()  # the schedule's own, without warm-up
                if scheduler.needs_metric:
                    scheduler.step(row["val_accuracy"])
                else:
                    scheduler.step()
            epoch, start_batch, sums = epoch + 1, 0, _fresh_sums()
            save(latest, epoch, 0, f"by the end of epoch {epoch}")
            last_good = (latest, epoch, 0)
            if epoch in restarts:
                snapshot = out / f"snapshot-epoch{epoch:03d}.npz"
                save(snapshot, epoch, 0, f"by the end of epoch {epoch}")
                log(f"end of a warm-restart cycle: snapshot {snapshot}")
            write(metrics_files, lambda: write_metrics(
                out, config, history, None, {"data": info, "wall_seconds": wall_seconds(),
                                             "ranks": ranks}))
            write(out / "curves.png", lambda: plot_curves(out, history, run_title(config)))
            if agreed(interrupt.requested):  # Ctrl-C during the validation or the writes
                message = (f"interrupted after epoch {epoch}; saved {latest}. Continue "
                           f"with: tinyvgg train --resume {shlex.quote(str(latest))}")
                log(message)
                return RunResult("interrupted", epoch, history, None, out, latest, message)
        if average is not None:
            # as the recalibration below, a pure function of the checkpoint's state
            average.copy_to_parameters()
            log(f"weights averaged over the {average.count} steps of the last "
                f"{epochs_text(config.swa_epochs)}")
        if config.recalibrates_bn:
            # a pure function of the weights: a resumed run that gets here again repeats it
            unaugmented = data.train_unaugmented
            count = recalibrate_batch_norm(model, unaugmented.batches(
                0, stop=distributed.whole_batches(group, unaugmented)), config.device)
            if group is not None:  # rank 0's statistics on every rank, as after each epoch
                distributed.broadcast_state(group, model)
            log(f"batch-norm statistics recalibrated: averaged over {count} "
                f"batch{'' if count == 1 else 'es'} of the training images without "
                f"augmentation")
        # the flag is still watched here: a Ctrl-C during the test stops once it ends
        test_probabilities = probabilities(data.test)
        if agreed(interrupt.requested):
            path = last_good[0]
            message = (f"interrupted during the final test; {path} holds all "
                       f"{epochs_text(epoch)}. Run the test with: tinyvgg train --resume "
                       f"{shlex.quote(str(path))}")
            log(message)
            return RunResult("interrupted", epoch, history, None, out, path, message)
    test = scores(test_probabilities, loader_labels(data.test))
    test["images"] = int(len(test_probabilities))
    write(metrics_files, lambda: write_metrics(
        out, config, history, test, {"data": info, "wall_seconds": wall_seconds(),
                                     "command": command_line(config), "ranks": ranks}))
    write(out / "curves.png", lambda: plot_curves(out, history, run_title(config)))
    from ..io.serialization import save as save_weights
    write(out / "model.npz", lambda: save_weights(model, out / "model.npz"))
    # written last: a checkpoint holding the test result marks the run as complete
    save(latest, epoch, 0, "by the end of the run", test=test)
    log(f"test accuracy {100 * test['accuracy']:.2f}% ({test['images']} images), "
        f"loss {test['loss']:.4f}; weights in {out / 'model.npz'}")
    return RunResult("finished", epoch, history, test, out, latest)


def _run_settings(config: TrainConfig, data, resume) -> dict:
    """What every rank of a run must agree on, by the flag that sets it: the settings
    (but those that change no result on one rank, such as --prefetch), the data, the
    checkpoint resumed."""
    free = ("prefetch", "out")
    settings = {"--" + key.replace("_", "-"): value
                for key, value in config.to_dict().items() if key not in free}
    settings["the training data (digest)"] = distributed.data_digest(data.train.dataset)
    settings["--resume"] = None if resume is None else str(resume)
    return settings


def _ranks_line(config: TrainConfig, group, devices, buckets: int, loader, batches: int,
                earlier_ranks) -> str:
    size = group.size
    per_rank = config.batch_size / size
    share = f"{per_rank:g}" if per_rank == int(per_rank) else f"about {per_rank:.1f}"
    where = "; ".join(f"rank {rank} on {device}" for rank, device in enumerate(devices))
    line = (f"  training on {size} ranks ({where}); global batch {config.batch_size}, "
            f"{share} images per rank; batch norm "
            f"{'over the global batch (--sync-bn)' if config.sync_bn else 'per rank'}; "
            f"gradients summed in {buckets} bucket{'' if buckets == 1 else 's'} of up to "
            f"{config.bucket_mb:g} MB, "
            f"{'during backward' if config.overlap else 'after backward (--no-overlap)'}")
    if batches < len(loader):
        line += (f"; the last batch of each epoch ({loader.batch_size_of(batches)} images, "
                 f"fewer than the ranks) is left out")
    if earlier_ranks is not None and earlier_ranks != size:
        line += f"; the run was trained on {earlier_ranks} rank(s) until now"
    return line


def _fresh_sums() -> dict:
    return {"loss": 0.0, "correct": 0, "count": 0}
