"""Training runs end to end on small made-up digits: resume, checkpoints, divergence, CLI."""
import errno
import json
import os
import shlex
import signal
from dataclasses import replace

import numpy as np
import pytest

from tinyvgg.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinyvgg.cli import main
from tinyvgg.data.datasets import write_idx
from tinyvgg.train import TrainConfig, TrainingDiverged, command_line, parse_augment, train


def make_digits(n: int, seed: int):
    """28x28 uint8 images whose class (0..9) is the length of a bright bar, plus noise
    (a length survives the random crop's shifts)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[12:16, 4:6 + 2 * int(label)] = 230
    return images, labels


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    for split, n, seed in (("train", 320, 1), ("t10k", 80, 2)):
        images, labels = make_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def small_config(digits_dir, out, **changes):
    options = dict(dataset="mnist", data_dir=str(digits_dir), model="vgg11", width=0.0625,
                   epochs=2, batch_size=32, lr=0.05, val_size=64, schedule="step",
                   step_size=1, dtype="float64", prefetch=0, out=str(out), seed=3)
    options.update(changes)
    return TrainConfig(**options)


def weights_of(run_dir):
    return load_checkpoint(os.path.join(run_dir, "checkpoint.npz")).model


def assert_bit_identical(a, b):
    assert list(a) == list(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), f"{key} differs"


@pytest.mark.parametrize("augment", ["auto", "crop,rotate"])
def test_two_epochs_equal_one_plus_resume_plus_one_bit_for_bit(digits_dir, tmp_path, augment):
    whole = train(small_config(digits_dir, tmp_path / "whole", augment=augment), progress=False,
                  log=lambda m: 0)
    assert whole.status == "finished" and whole.epoch == 2
    first = train(small_config(digits_dir, tmp_path / "split", epochs=1, augment=augment),
                  progress=False, log=lambda m: 0)
    assert first.status == "finished"
    resumed = train(small_config(digits_dir, tmp_path / "split", augment=augment),
                    resume=tmp_path / "split" / "checkpoint.npz", progress=False,
                    log=lambda m: 0)
    assert resumed.epoch == 2
    assert_bit_identical(weights_of(tmp_path / "whole"), weights_of(tmp_path / "split"))
    optimizer_a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz").optimizer
    optimizer_b = load_checkpoint(tmp_path / "split" / "checkpoint.npz").optimizer
    assert_bit_identical(optimizer_a, optimizer_b)
    assert whole.test == resumed.test
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]


def test_the_run_actually_learns(digits_dir, tmp_path):
    result = train(small_config(digits_dir, tmp_path, epochs=4, batch_size=16, lr=0.02,
                                dropout=0.0, dtype="float32", schedule="cosine"),
                   progress=False, log=lambda m: 0)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test["accuracy"] > 0.4  # chance is 0.1; this run reaches 0.65


@pytest.fixture
def sigint_handler():
    """SIGINT's handler before the test, which a run must restore: Python's
    default_int_handler, or SIG_IGN in a process started in the background."""
    return signal.getsignal(signal.SIGINT)


def ctrl_c_after(epoch, batch):
    """An ``on_batch`` callback that presses Ctrl-C after step ``batch`` of epoch ``epoch``
    (both from 0)."""
    def press(epoch_, index, loss):
        if (epoch_, index) == (epoch, batch):
            signal.raise_signal(signal.SIGINT)
    return press


@pytest.mark.parametrize("schedule", ["cosine", "warm-restarts"])
def test_ctrl_c_mid_epoch_saves_and_resume_continues_exactly(digits_dir, tmp_path, schedule,
                                                          sigint_handler):
    whole = train(small_config(digits_dir, tmp_path / "whole", schedule=schedule,
                               restart_period=1), progress=False, log=lambda m: 0)
    messages = []
    stopped = train(small_config(digits_dir, tmp_path / "cut", schedule=schedule,
                                 restart_period=1), progress=False, log=messages.append,
                    on_batch=ctrl_c_after(1, 2))
    assert stopped.status == "interrupted"
    assert "tinyvgg train --resume" in messages[-1]
    meta = load_checkpoint(stopped.checkpoint).meta
    assert (meta["epoch"], meta["batch"]) == (1, 3)
    assert signal.getsignal(signal.SIGINT) is sigint_handler  # handler restored
    resumed = train(small_config(digits_dir, tmp_path / "cut", schedule=schedule,
                                 restart_period=1), resume=stopped.checkpoint,
                    progress=False, log=lambda m: 0)
    assert resumed.status == "finished"
    assert_bit_identical(weights_of(tmp_path / "whole"), weights_of(tmp_path / "cut"))
    assert whole.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]


def test_warm_restarts_leave_a_snapshot_per_cycle(digits_dir, tmp_path):
    train(small_config(digits_dir, tmp_path, epochs=4, schedule="warm-restarts",
                       restart_period=2, dtype="float32"), progress=False, log=lambda m: 0)
    snapshots = sorted(p.name for p in tmp_path.glob("snapshot-*.npz"))
    assert snapshots == ["snapshot-epoch002.npz", "snapshot-epoch004.npz"]


def test_outputs_metrics_csv_json_and_curves(digits_dir, tmp_path):
    train(small_config(digits_dir, tmp_path, dtype="float32"), progress=False, log=lambda m: 0)
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy")
    assert len(csv_lines) == 3
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["config"]["width"] == 0.0625
    assert 0 <= document["test"]["accuracy"] <= 1 and document["test"]["images"] == 80
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "model.npz").is_file()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(digits_dir, tmp_path):
    config = small_config(digits_dir, tmp_path, epochs=3, dtype="float32")

    def poison(epoch, index, loss):
        if (epoch, index) == (1, 1):
            first_weight = next(iter(model_parameters))
            first_weight.data[...] = np.inf

    model_parameters = []
    import tinyvgg.train.loop as loop_module
    build = loop_module.build_model

    def build_and_remember(*args, **kwargs):
        model = build(*args, **kwargs)
        model_parameters.extend(model.parameters())
        return model

    loop_module.build_model = build_and_remember
    try:
        with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 2, batch 2"
                                                   r".*last good checkpoint.*--lr"):
            train(config, progress=False, log=lambda m: 0, on_batch=poison)
    finally:
        loop_module.build_model = build
    kept = load_checkpoint(tmp_path / "checkpoint.npz")
    assert (kept.meta["epoch"], kept.meta["batch"]) == (1, 0)
    assert all(np.isfinite(v).all() for v in kept.model.values())


# --- divergence: nothing non-finite is ever kept -------------------------------------------

@pytest.fixture
def built_models(monkeypatch):
    """The models train() builds, so that a test can reach into the one being trained."""
    import tinyvgg.train.loop as loop_module
    models = []
    build = loop_module.build_model

    def build_and_remember(*args, **kwargs):
        models.append(build(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(loop_module, "build_model", build_and_remember)
    return models


def batch_norm_buffer(model, name):
    return [array for key, array in model.named_buffers() if key.endswith(name)][0]


def restart_command(message):
    """The config of the ``tinyvgg train ...`` command a divergence message offers."""
    from tinyvgg.cli import build_parser
    command = message.split("Start over with a lower --lr")[1].split("): ", 1)[1]
    args = build_parser().parse_args(shlex.split(command)[1:])
    return TrainConfig(**{k: v for k, v in vars(args).items()
                          if k in TrainConfig.__dataclass_fields__ and v is not None})


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["end-of-epoch", "ctrl-c"])
def test_non_finite_batch_norm_statistics_are_never_checkpointed(digits_dir, tmp_path,
                                                                 built_models, ctrl_c,
                                                                 sigint_handler):
    """An infinite running variance leaves the training loss finite (training normalises
    by the batch's statistics), so only the check of the state before each write stops
    the run; the epoch-1 checkpoint stays, and the advice is a fresh run at lr / 10."""
    config = small_config(digits_dir, tmp_path / "run", epochs=3)

    def poison(epoch, index, loss):
        if (epoch, index) == (1, 1):
            batch_norm_buffer(built_models[0], "running_var")[...] = np.inf
            if ctrl_c:
                signal.raise_signal(signal.SIGINT)

    when = "by epoch 2, batch 2 \\(at Ctrl-C\\)" if ctrl_c else "by the end of epoch 2"
    with pytest.raises(TrainingDiverged, match=rf"running_var became NaN or infinite {when}: "
                                               r"training stopped\. The last good checkpoint "
                                               r"is .*checkpoint\.npz \(after epoch 1\)"):
        train(config, progress=False, log=lambda m: 0, on_batch=poison)
    kept = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert (kept.meta["epoch"], kept.meta["batch"]) == (1, 0)
    assert all(np.isfinite(v).all() for v in kept.model.values())
    assert signal.getsignal(signal.SIGINT) is sigint_handler


def test_a_nan_validation_loss_stops_the_run_and_says_there_is_no_good_checkpoint(
        digits_dir, tmp_path, built_models):
    config = small_config(digits_dir, tmp_path / "run", epochs=2)

    def poison(epoch, index, loss):
        if (epoch, index) == (0, 1):
            batch_norm_buffer(built_models[0], "running_mean")[...] = np.nan

    with pytest.raises(TrainingDiverged) as failure:
        train(config, progress=False, log=lambda m: 0, on_batch=poison)
    message = str(failure.value)
    assert message.startswith("validation loss became nan after epoch 1: training stopped. "
                              "No good checkpoint of this run was written. Start over with "
                              "a lower --lr (this run's is 0.05): tinyvgg train ")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()
    suggested = restart_command(message)
    assert suggested == replace(config, lr=0.005, out=str(tmp_path / "run-lr0.005"))
    assert not (tmp_path / "run-lr0.005").exists()


@pytest.fixture(scope="module")
def one_epoch_run(digits_dir, tmp_path_factory):
    """A finished one-epoch run (constant schedule): its folder, not to be changed."""
    out = tmp_path_factory.mktemp("one-epoch")
    train(small_config(digits_dir, out, epochs=1, dtype="float32", schedule="constant"),
          progress=False, log=lambda m: 0)
    return out


def copy_of(run_dir, tmp_path):
    import shutil
    return shutil.copytree(run_dir, tmp_path / "run")


def files_and_times(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_a_checkpoint_with_non_finite_weights_is_refused_by_eval_and_resume(
        one_epoch_run, tmp_path, capsys):
    good = load_checkpoint(one_epoch_run / "checkpoint.npz")
    model = dict(good.model)
    name = next(k for k in model if k.endswith("running_var"))
    model[name] = model[name].copy()
    model[name][0] = np.nan
    bad = tmp_path / "bad.npz"
    save_checkpoint(bad, model, good.optimizer, good.meta)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(bad)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"tinyvgg eval: checkpoint {bad}: {name} hold NaN or infinite")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        train(TrainConfig.from_dict({**good.meta["config"], "epochs": 2,
                                     "out": str(tmp_path / "more")}),
              resume=bad, progress=False, log=lambda m: 0)
    assert not (tmp_path / "more").exists()


# --- resume: finished runs, longer runs, schedules ------------------------------------------

def test_resuming_a_finished_run_says_so_and_changes_nothing(one_epoch_run, capsys):
    before = files_and_times(one_epoch_run)
    assert main(["train", "--resume", str(one_epoch_run / "checkpoint.npz"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    test = json.loads((one_epoch_run / "metrics.json").read_text())["test"]
    assert printed == (f"the run saved in {one_epoch_run / 'checkpoint.npz'} is complete: "
                       f"1 epoch, test accuracy {100 * test['accuracy']:.2f}%; nothing to do "
                       f"(a larger --epochs continues it)\n")
    assert files_and_times(one_epoch_run) == before


def test_resume_refuses_epochs_that_end_before_the_checkpoint(one_epoch_run, tmp_path, capsys):
    checkpoint = load_checkpoint(one_epoch_run / "checkpoint.npz")
    mid_epoch = tmp_path / "mid.npz"  # as if Ctrl-C had stopped it in a second epoch
    save_checkpoint(mid_epoch, checkpoint.model, checkpoint.optimizer,
                    {**checkpoint.meta, "batch": 3, "test": None,
                     "config": {**checkpoint.meta["config"], "epochs": 4}})
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(mid_epoch), "--epochs", "1", "--no-progress"])
    assert exit_info.value.code == 2
    assert "--epochs 1 ends before where checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid.npz"]


@pytest.mark.parametrize("settings, refusal, complete", [
    (dict(schedule="cosine"),
     ["cosine schedule takes the learning rate to 0 at the end of its 1 epoch",
      "can extend the schedules constant, step, plateau, warm-restarts"],
     "its cosine schedule has ended, so training longer needs a new run"),
    (dict(schedule="constant", swa_epochs=1),
     ["--epochs 2: this run averages its weights over its last 1 epoch (--swa-epochs), which "
      "end at epoch 1; another end would move that window"],
     "its weights are averaged over its last epochs, so training longer needs a new run"),
])
def test_a_run_that_cannot_be_extended_says_so_and_is_left_alone(digits_dir, tmp_path,
                                                                  capsys, settings, refusal,
                                                                  complete):
    out = tmp_path / "run"
    train(small_config(digits_dir, out, epochs=1, dtype="float32", **settings),
          progress=False, log=lambda m: 0)
    before = files_and_times(out)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(out / "checkpoint.npz"), "--epochs", "2",
              "--no-progress"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    for words in refusal:
        assert words in error
    command = error.split("start over: ")[1].strip()
    assert command.startswith("tinyvgg train ") and "--epochs 2" in command
    assert command.endswith(f"--out {tmp_path / 'run-2epochs'}")
    assert main(["train", "--resume", str(out / "checkpoint.npz"), "--no-progress"]) == 0
    assert complete in capsys.readouterr().out
    assert files_and_times(out) == before


def test_a_longer_resume_says_how_the_schedule_continues(one_epoch_run, tmp_path):
    run = copy_of(one_epoch_run, tmp_path)
    config = TrainConfig.from_dict({**load_checkpoint(run / "checkpoint.npz").meta["config"],
                                    "epochs": 2, "out": str(run)})
    messages = []
    result = train(config, resume=run / "checkpoint.npz", progress=False,
                   log=messages.append)
    assert result.status == "finished" and len(result.history) == 2
    assert messages[0].endswith("at epoch 2, batch 0; --epochs 2 (the run had 1): the "
                                "constant schedule carries on from learning rate 0.05")
    assert result.history[1]["lr"] == 0.05


def test_an_epoch_at_learning_rate_zero_is_refused(one_epoch_run, tmp_path):
    run = copy_of(one_epoch_run, tmp_path)
    checkpoint = load_checkpoint(run / "checkpoint.npz")
    scheduler = {**checkpoint.meta["scheduler"], "base_lr": 0.0, "last_lr": 0.0}
    save_checkpoint(run / "checkpoint.npz", checkpoint.model, checkpoint.optimizer,
                    {**checkpoint.meta, "scheduler": scheduler})
    before = files_and_times(run)
    config = TrainConfig.from_dict({**checkpoint.meta["config"], "epochs": 2,
                                    "out": str(run)})
    with pytest.raises(ValueError, match=r"the learning rate is 0 at epoch 2, batch 0 "
                                         r"\(constant schedule\).*only batch-norm"):
        train(config, resume=run / "checkpoint.npz", progress=False, log=lambda m: 0)
    assert files_and_times(run) == before


# --- Ctrl-C during validation and the final test --------------------------------------------

@pytest.fixture(scope="module")
def two_epochs(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("two-epochs")
    return train(small_config(digits_dir, out), progress=False, log=lambda m: 0)


@pytest.mark.parametrize("pass_number, said", [
    (2, "interrupted after epoch 2; saved"),  # the last epoch's validation
    (3, "interrupted during the final test;"),
])
def test_ctrl_c_in_the_last_validation_or_the_test_stops_and_resumes_exactly(
        digits_dir, tmp_path, monkeypatch, two_epochs, pass_number, said):
    import tinyvgg.train.loop as loop_module
    evaluate = loop_module.predict_probabilities
    passes = []

    def press_ctrl_c_during(*args, **kwargs):
        passes.append(1)
        if len(passes) == pass_number:
            signal.raise_signal(signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop_module, "predict_probabilities", press_ctrl_c_during)
    out = tmp_path / "cut"
    messages = []
    stopped = train(small_config(digits_dir, out), progress=False, log=messages.append)
    monkeypatch.undo()
    assert stopped.status == "interrupted"
    assert said in messages[-1] and f"tinyvgg train --resume {out / 'checkpoint.npz'}" \
        in messages[-1]
    meta = load_checkpoint(out / "checkpoint.npz").meta
    assert (meta["epoch"], meta["batch"], meta.get("test")) == (2, 0, None)
    assert json.loads((out / "metrics.json").read_text())["test"] is None
    assert not (out / "model.npz").exists()
    messages.clear()
    resumed = train(small_config(digits_dir, out), resume=out / "checkpoint.npz",
                    progress=False, log=messages.append)
    assert messages[0].endswith("all 2 epochs are trained; the final test is left")
    assert resumed.status == "finished" and resumed.test == two_epochs.test
    assert [r["train_loss"] for r in resumed.history] == \
        [r["train_loss"] for r in two_epochs.history]
    assert_bit_identical(weights_of(two_epochs.output_dir), weights_of(out))


# --- the output folder ----------------------------------------------------------------------

def quick_run_flags(digits_dir):
    return ["train", "--data-dir", str(digits_dir), "--width", "0.0625", "--val-size", "64",
            "--batch-size", "32", "--schedule", "constant", "--no-progress"]


@pytest.mark.parametrize("below", [False, True], ids=["the-file", "under-the-file"])
def test_an_out_that_is_a_file_is_refused_before_training(digits_dir, tmp_path, capsys, below):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    out = a_file / "run" if below else a_file
    assert main([*quick_run_flags(digits_dir), "--epochs", "1", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""  # not one batch
    in_the_way = f"{a_file} is" if below else "it is"
    assert printed.err == f"tinyvgg train: cannot write to --out {out}: {in_the_way} a file, " \
                          f"not a folder\n"
    assert a_file.read_text() == "keep me"


def test_a_full_disk_is_found_before_training(digits_dir, tmp_path, capsys, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    out = tmp_path / "run"
    assert main([*quick_run_flags(digits_dir), "--epochs", "1", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == f"tinyvgg train: cannot write to --out {out}: No space left on " \
                          f"device\n"
    assert list(out.iterdir()) == []


def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_last_one(
        digits_dir, tmp_path, capsys, monkeypatch):
    import tinyvgg.train.loop as loop_module
    write_checkpoint = loop_module.save_checkpoint
    out = tmp_path / "run"
    written = []

    def fill_the_disk_at_the_second(path, *args):
        if written:  # the disk is full from the second checkpoint on
            written.append((out / "checkpoint.npz").read_bytes())

            def disk_full(fd):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(os, "fsync", disk_full)
        else:
            written.append(None)
        return write_checkpoint(path, *args)

    monkeypatch.setattr(loop_module, "save_checkpoint", fill_the_disk_at_the_second)
    assert main([*quick_run_flags(digits_dir), "--epochs", "2", "--out", str(out)]) == 1
    checkpoint = out / "checkpoint.npz"
    assert capsys.readouterr().err == (
        f"tinyvgg train: cannot write {checkpoint}: No space left on device; the last "
        f"checkpoint, {checkpoint} (after epoch 1), is whole; continue with: tinyvgg train "
        f"--resume {checkpoint}\n")
    assert checkpoint.read_bytes() == written[1]
    assert load_checkpoint(checkpoint).meta["epoch"] == 1
    assert not list(out.glob(".*.tmp"))


def test_a_run_removes_the_temporary_files_a_killed_write_left(digits_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    ours = [".checkpoint.npz.k3_9xq0a.tmp", ".metrics.json.abcdefgh.tmp",
            ".snapshot-epoch002.npz.00000000.tmp"]
    others = ["notes.tmp", ".notes.txt.abcdefgh.tmp", ".checkpoint.npz.tmp"]
    for name in ours + others:
        (out / name).write_bytes(b"partial")
    messages = []
    train(small_config(digits_dir, out, epochs=1, dtype="float32", schedule="constant"),
          progress=False, log=messages.append)
    assert messages[0] == (f"removed 3 temporary file(s) that an interrupted write left in "
                           f"{out}: {', '.join(sorted(ours))}")
    left = {p.name for p in out.iterdir()}
    assert not left & set(ours) and set(others) <= left

def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"w": np.arange(4.0)}, {"lr": np.array(0.1)}, {"epoch": 1})
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, {"w": np.arange(1e6)}, {"lr": np.array(0.2)}, {"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_a_truncated_or_foreign_checkpoint_is_refused_clearly(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"w": np.arange(4.0)}, {}, {"epoch": 1})
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.npz"):
        load_checkpoint(cut)
    weights_only = tmp_path / "weights.npz"
    np.savez(weights_only, w=np.arange(3.0))
    with pytest.raises(CheckpointError, match="weights file"):
        load_checkpoint(weights_only)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "missing.npz")


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-1"], "learning rate must be a positive number"),
    (["--lr", "nan"], "learning rate must be a positive number"),
    (["--momentum", "1.5"], "momentum must be in"),
    (["--augment", "crop,spin"], "unknown augmentation spin"),
    (["--augment", "rotate,hue-sat"],
     "--augment hue-sat changes colours and needs RGB images; mnist's images are grey"),
    (["--val-size", "100000"], "leaves no training images"),
    (["--image-size", "16"], "at least 32"),
    (["--schedule", "plateau", "--val-size", "0"], "needs --val-size > 0"),
])
def test_bad_flags_give_clear_errors(digits_dir, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data-dir", str(digits_dir), "--out", str(tmp_path), "--no-progress",
              "--epochs", "1", "--width", "0.0625", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_names_what_to_install(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"),
              "--no-progress"])
    error = capsys.readouterr().err
    assert "tinyvgg train:" in error and "train-images-idx3-ubyte" in error


def test_resume_refuses_changed_settings(digits_dir, tmp_path, capsys):
    assert main(["train", "--data-dir", str(digits_dir), "--out", str(tmp_path), "--epochs",
                 "1", "--width", "0.0625", "--val-size", "64", "--schedule", "constant",
                 "--no-progress"]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path / "checkpoint.npz"), "--lr", "0.5",
              "--no-progress"])
    assert "--lr 0.5 (the run has 0.05)" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "checkpoint.npz"), "--epochs", "2",
                 "--no-progress"]) == 0
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3


def test_eval_and_the_ensemble_of_snapshots(digits_dir, tmp_path, capsys):
    train(small_config(digits_dir, tmp_path, epochs=2, schedule="warm-restarts",
                       restart_period=1, dtype="float32"), progress=False, log=lambda m: 0)
    snapshots = sorted(str(p) for p in tmp_path.glob("snapshot-*.npz"))
    assert len(snapshots) == 2
    assert main(["eval", *snapshots, "--ensemble", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 80 and len(result["members"]) == 2
    assert 0 <= result["ensemble"]["accuracy"] <= 1
    assert main(["eval", snapshots[0]]) == 0
    assert "80 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", snapshots[0], "--ensemble"])
    assert "at least two" in capsys.readouterr().err


def test_predict_reads_image_files(digits_dir, tmp_path, capsys):
    from PIL import Image
    train(small_config(digits_dir, tmp_path, epochs=1, dtype="float32"), progress=False,
          log=lambda m: 0)
    images, labels = make_digits(3, seed=9)
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(image).resize((56, 56)).save(files[-1])
    checkpoint = str(tmp_path / "checkpoint.npz")
    assert main(["predict", checkpoint, *files, "--json", "--top", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in rows] == files
    for row in rows:
        assert len(row["top"]) == 2
        assert row["top"][0]["probability"] >= row["top"][1]["probability"]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SystemExit):
        main(["predict", checkpoint, str(tmp_path / "broken.png")])
    assert "broken.png" in capsys.readouterr().err


def digit_picture(light_on_dark: bool, seed: int, size: int = 64):
    """A hand-drawn-looking 7 (two thick strokes) on a noisy background, as a PIL image:
    light strokes on a dark background like MNIST's, or dark ink on light paper."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(rng.integers(0, 50, (size, size)).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    margin = size // 5
    draw.line([(margin, margin), (size - margin, margin), (size // 2 - 4, size - margin)],
              fill=int(rng.integers(210, 256)), width=max(2, size // 10))
    pixels = np.asarray(picture)
    return Image.fromarray(pixels if light_on_dark else 255 - pixels)


def test_background_warning_compares_the_border_with_the_training_data():
    from tinyvgg.train import background_warning
    rng = np.random.default_rng(4)
    dark = rng.integers(0, 60, (1, 40, 40)).astype(np.uint8)
    light = 255 - dark
    stroke = dark.copy()
    stroke[:, 8:32, 8:32] = rng.integers(200, 256, (1, 24, 24))  # a large bright centre
    mnist_mean, paper_mean = [0.1307], [0.82]
    assert background_warning(dark, mnist_mean) is None
    assert background_warning(stroke, mnist_mean) is None  # only the border counts
    assert "add --invert" in background_warning(light, mnist_mean)
    assert "leave out --invert" in background_warning(light, mnist_mean, inverted=True)
    assert background_warning(light, paper_mean) is None  # trained on light backgrounds
    rgb = np.repeat(light, 3, axis=0)
    assert background_warning(rgb, [0.1, 0.12, 0.2]) is not None
    assert background_warning(light[:, :1, :1], mnist_mean) is not None  # a 1x1 image


def test_predict_warns_when_the_picture_s_background_is_not_the_model_s(digits_dir, tmp_path,
                                                                         capsys):
    train(small_config(digits_dir, tmp_path, epochs=1, dtype="float32"), progress=False,
          log=lambda m: 0)
    checkpoint = str(tmp_path / "checkpoint.npz")
    light_strokes, dark_ink = str(tmp_path / "light.png"), str(tmp_path / "ink.png")
    digit_picture(True, seed=5).save(light_strokes)
    digit_picture(False, seed=6).save(dark_ink)

    assert main(["predict", checkpoint, light_strokes, dark_ink]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"tinyvgg predict: warning: {dark_ink}: its background is light, but the model was "
        f"trained on light strokes on a dark background, so the answer is likely wrong; "
        f"for dark strokes on light paper add --invert"]
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [light_strokes,
                                                                          dark_ink]

    assert main(["predict", checkpoint, light_strokes, dark_ink, "--invert", "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows[1]["warning"] is None
    assert rows[0]["warning"].startswith(f"{light_strokes}: with --invert its background is "
                                         f"light")
    assert rows[0]["warning"].endswith("; leave out --invert")
    assert captured.err == f"tinyvgg predict: warning: {rows[0]['warning']}\n"


@pytest.mark.parametrize("changes", [
    {}, {"dataset": "fashion-mnist", "width": 0.5, "epochs": 15},
    {"batch_norm": False, "nesterov": True, "weight_decay": 1e-4, "schedule": "warm-restarts",
     "restart_period": 4, "augment": "crop,jitter", "data_dir": "/data/x", "limit": 100},
])
def test_the_recorded_command_rebuilds_the_same_configuration(changes):
    from tinyvgg.cli import build_parser
    config = TrainConfig(**changes)
    words = command_line(config).split()
    assert words[:2] == ["tinyvgg", "train"]
    args = build_parser().parse_args(words[1:])
    given = {k: v for k, v in vars(args).items()
             if k in TrainConfig.__dataclass_fields__ and v is not None}
    assert TrainConfig(**given) == config


def test_automatic_augmentation_never_mirrors_digits():
    assert parse_augment("auto", "mnist") == ("crop",)
    assert "flip" in parse_augment("auto", "fashion-mnist")
    assert parse_augment("auto", "folder") == ("scale", "flip", "rgb")
    assert parse_augment("none", "mnist") == ()


def test_rotation_and_hue_join_the_pipeline_after_the_other_augmentations():
    from tinyvgg.data import transforms as T
    from tinyvgg.train.data import input_pipelines
    assert parse_augment("crop, rotate", "mnist") == ("crop", "rotate")
    for dataset in ("mnist", "fashion-mnist"):
        for colour in ("rgb", "hue-sat"):
            with pytest.raises(ValueError, match=f"--augment {colour} changes colours"):
                parse_augment(f"crop,{colour}", dataset)
    config = TrainConfig(dataset="folder", augment="erase,rotate,hue-sat,jitter,flip,scale,rgb")
    train_tf, eval_tf = input_pipelines(config, 32, [0.5] * 3, [0.25] * 3)
    assert [type(t) for t in train_tf.transforms] == [
        T.RandomScaleCrop, T.RandomHorizontalFlip, T.ColorJitter, T.HueSaturationJitter,
        T.RGBShift, T.RandomRotation, T.RandomErasing, T.Normalize]
    assert train_tf.transforms[3].hue == 0.05 and train_tf.transforms[5].degrees == (-20, 20)
    assert [type(t) for t in eval_tf.transforms] == [T.Normalize]
    digits, _ = input_pipelines(TrainConfig(augment="crop,rotate"), 28, [0.1], [0.3])
    assert [type(t) for t in digits.transforms] == [T.Pad, T.RandomCrop, T.RandomRotation,
                                                    T.Normalize]
    clothes, _ = input_pipelines(TrainConfig(dataset="fashion-mnist", augment="crop,flip,erase"),
                                 28, [0.3], [0.35])
    assert [type(t) for t in clothes.transforms] == [T.Pad, T.RandomCrop, T.RandomHorizontalFlip,
                                                     T.RandomErasing, T.Normalize]
    assert clothes.transforms[3].value == "random" and clothes.transforms[3].p == 0.5
    smaller, _ = input_pipelines(TrainConfig(augment="crop,rotate", rotate_degrees=7.5), 28,
                                 [0.1], [0.3])
    assert smaller.transforms[2].degrees == (-7.5, 7.5)


@pytest.mark.parametrize("settings, message", [
    (dict(augment="crop", rotate_degrees=10), "sets the angles of --augment rotate, which "
                                              "this run does not use"),
    (dict(augment="rotate", rotate_degrees=0), r"must be in \(0, 180\], got 0"),
    (dict(augment="rotate", rotate_degrees=float("nan")), r"must be in \(0, 180\], got nan"),
    (dict(augment="rotate", rotate_degrees=200), r"must be in \(0, 180\], got 200"),
])
def test_a_rotation_angle_that_cannot_apply_is_refused(settings, message):
    with pytest.raises(ValueError, match="train: --rotate-degrees .*" + message):
        TrainConfig(**settings)


@pytest.fixture
def learning_rates(monkeypatch):
    """The learning rate of every optimiser step the test's runs take, in order."""
    from tinyvgg import optim
    rates, step = [], optim.SGD.step

    def recording_step(self):
        rates.append(self.lr)
        step(self)
    monkeypatch.setattr(optim.SGD, "step", recording_step)
    return rates


def test_a_warmup_scales_the_schedule_linearly_over_its_steps(digits_dir, tmp_path,
                                                              learning_rates):
    """256 training images in batches of 32: 8 steps an epoch, 12 of warm-up. The step
    schedule divides by 10 after epoch 1, and the warm-up scales whatever it sets."""
    result = train(small_config(digits_dir, tmp_path, warmup_epochs=1.5), progress=False,
                   log=lambda m: 0)
    expected = [0.05 * (step + 1) / 12 for step in range(8)] + \
        [0.005 * (step + 1) / 12 for step in range(8, 12)] + [0.005] * 4
    np.testing.assert_allclose(learning_rates, expected, rtol=1e-15)
    assert [row["lr"] for row in result.history] == pytest.approx([0.05 * 8 / 12, 0.005])
    assert "--warmup-epochs 1.5" in command_line(small_config(digits_dir, tmp_path,
                                                              warmup_epochs=1.5))


def test_a_plateau_schedule_keeps_its_own_rate_across_a_warmup_epoch(digits_dir, tmp_path,
                                                                     learning_rates):
    """The first epoch ends mid-warm-up. The plateau scheduler takes the optimiser's rate
    as its own when it steps, so it must see the schedule's 0.05 there, not the warmed
    0.033 (which the second epoch's warm-up would then scale again)."""
    result = train(small_config(digits_dir, tmp_path, schedule="plateau", epochs=2,
                                warmup_epochs=1.5), progress=False, log=lambda m: 0)
    expected = [0.05 * (step + 1) / 12 for step in range(12)] + [0.05] * 4
    np.testing.assert_allclose(learning_rates, expected, rtol=1e-15)
    meta = load_checkpoint(result.checkpoint).meta
    assert meta["scheduler"]["last_lr"] == 0.05


@pytest.mark.parametrize("schedule", ["cosine", "warm-restarts"])
def test_ctrl_c_during_the_warmup_resumes_exactly(digits_dir, tmp_path, schedule,
                                                  sigint_handler):
    settings = dict(schedule=schedule, restart_period=1, warmup_epochs=1.5)
    whole = train(small_config(digits_dir, tmp_path / "whole", **settings), progress=False,
                  log=lambda m: 0)
    stopped = train(small_config(digits_dir, tmp_path / "cut", **settings), progress=False,
                    log=lambda m: 0, on_batch=ctrl_c_after(1, 1))
    assert stopped.status == "interrupted"
    resumed = train(small_config(digits_dir, tmp_path / "cut", **settings),
                    resume=stopped.checkpoint, progress=False, log=lambda m: 0)
    assert_bit_identical(weights_of(tmp_path / "whole"), weights_of(tmp_path / "cut"))
    assert [row["train_loss"] for row in whole.history] == \
        [row["train_loss"] for row in resumed.history]


def test_label_smoothing_changes_the_training_loss_not_the_scores(digits_dir, tmp_path,
                                                                   monkeypatch):
    """The first batch meets the same weights and images in both runs: its smoothed loss is
    the plain one moved by e (z_t - mean_c z_c), recomputed here from the logits."""
    from tinyvgg import functional
    seen = []
    plain_cross_entropy = functional.cross_entropy

    def recording(logits, labels, label_smoothing=0.0):
        loss = plain_cross_entropy(logits, labels, label_smoothing=label_smoothing)
        seen.append((logits.numpy().copy(), np.asarray(labels).copy(), label_smoothing,
                     loss.item()))
        return loss
    monkeypatch.setattr(functional, "cross_entropy", recording)
    train(small_config(digits_dir, tmp_path / "smoothed", epochs=1, label_smoothing=0.3),
          progress=False, log=lambda m: 0)
    logits, labels, smoothing, loss = seen[0]
    assert smoothing == 0.3
    rows = np.arange(len(labels))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    plain = -log_probs[rows, labels].mean()
    moved = 0.3 * (logits[rows, labels] - logits.mean(axis=1)).mean()
    assert loss == pytest.approx(plain + moved, rel=1e-12)
    assert "--label-smoothing 0.3" in command_line(small_config(digits_dir, tmp_path,
                                                                label_smoothing=0.3))


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, float("nan")])
def test_label_smoothing_outside_0_to_1_is_refused(smoothing):
    with pytest.raises(ValueError, match=r"train: --label-smoothing must be in \[0, 1\), got "):
        TrainConfig(label_smoothing=smoothing)


def test_recalibrated_statistics_are_the_plain_mean_of_the_batches():
    from tinyvgg import nn
    from tinyvgg.train.model import recalibrate_batch_norm
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU())
    model.eval()
    batches = [(rng.standard_normal((n, 3, 4, 5)) * 2 + 1, None) for n in (6, 0, 3, 5)]
    assert recalibrate_batch_norm(model, batches) == 3   # the empty batch is skipped
    used = [images for images, _ in batches if len(images)]
    means = [images.mean(axis=(0, 2, 3)) for images in used]
    variances = [images.var(axis=(0, 2, 3), ddof=1) for images in used]
    layer = model[0]
    np.testing.assert_allclose(layer.running_mean, np.mean(means, axis=0), rtol=1e-13)
    np.testing.assert_allclose(layer.running_var, np.mean(variances, axis=0), rtol=1e-13)
    assert layer.momentum == 0.1 and not model.training


def test_recalibrate_bn_replaces_the_statistics_of_the_finished_run(digits_dir, tmp_path):
    """The same run with and without the flag: the same weights; the flagged run's
    statistics are those recalibrate_batch_norm computes from the other's model."""
    from tinyvgg.train.data import prepare_data
    from tinyvgg.train.model import recalibrate_batch_norm
    from tinyvgg.train.predict import load_trained
    plain = small_config(digits_dir, tmp_path / "plain", epochs=1)
    flagged = replace(plain, out=str(tmp_path / "flagged"), recalibrate_bn=True)
    messages = []
    train(plain, progress=False, log=lambda m: 0)
    result = train(flagged, progress=False, log=messages.append)
    assert "batch-norm statistics recalibrated: averaged over 1 batch of" in messages[-2]
    expected = load_trained(tmp_path / "plain" / "checkpoint.npz").model
    recalibrate_batch_norm(expected, prepare_data(plain).train_unaugmented.batches(0))
    got = weights_of(tmp_path / "flagged")
    statistics = [k for k in got if "running" in k]
    assert statistics
    for key, value in expected.state_dict().items():
        np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)
    before = weights_of(tmp_path / "plain")
    assert all(not np.array_equal(before[k], got[k]) for k in statistics)
    assert result.test["accuracy"] == load_checkpoint(
        tmp_path / "flagged" / "checkpoint.npz").meta["test"]["accuracy"]
    assert "--recalibrate-bn" in command_line(flagged)


def test_recalibrate_bn_without_batch_norm_is_refused():
    with pytest.raises(ValueError, match="train: --recalibrate-bn recomputes batch-norm "
                                         "statistics, which --no-batch-norm leaves out"):
        TrainConfig(batch_norm=False, recalibrate_bn=True)


@pytest.mark.parametrize("warmup", [-0.5, 3, 4.5, float("nan"), float("inf")])
def test_a_warmup_outside_the_run_is_refused(warmup):
    with pytest.raises(ValueError, match=r"train: --warmup-epochs must be at least 0 and less "
                                         r"than --epochs \(3\), got "):
        TrainConfig(epochs=3, warmup_epochs=warmup)


@pytest.fixture
def parameters_after_each_step(monkeypatch):
    """The parameters after every optimiser step the test's runs take, in order: one
    {name: array} per step."""
    from tinyvgg import optim
    visited, step = [], optim.SGD.step

    def recording_step(self):
        step(self)
        visited.append({name: p.data.copy() for name, p in zip(self.names, self.params)})
    monkeypatch.setattr(optim.SGD, "step", recording_step)
    return visited


def test_swa_ends_on_the_mean_of_the_weights_after_every_step_of_its_epochs(
        digits_dir, tmp_path, parameters_after_each_step):
    """8 steps an epoch: the last 2 epochs' 16 steps are averaged; the batch-norm statistics
    are then those of the averaged weights (recalibrating again changes nothing)."""
    from tinyvgg.train.data import prepare_data
    from tinyvgg.train.model import recalibrate_batch_norm
    from tinyvgg.train.predict import load_trained
    config = small_config(digits_dir, tmp_path, epochs=3, swa_epochs=2)
    messages = []
    train(config, progress=False, log=messages.append)
    assert len(parameters_after_each_step) == 24
    assert "weights averaged over the 16 steps of the last 2 epochs" in messages
    assert messages[-2].startswith("batch-norm statistics recalibrated: averaged over 1 batch")
    got = weights_of(tmp_path)
    for name in parameters_after_each_step[0]:
        expected = np.mean([step[name] for step in parameters_after_each_step[8:]], axis=0)
        np.testing.assert_allclose(got[name], expected, rtol=1e-12, atol=1e-15, err_msg=name)
        assert not np.array_equal(got[name], parameters_after_each_step[-1][name])
    model = load_trained(tmp_path / "checkpoint.npz").model
    recalibrate_batch_norm(model, prepare_data(config).train_unaugmented.batches(0))
    statistics = {key: value for key, value in model.state_dict().items() if "running" in key}
    assert statistics
    for key, value in statistics.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)
    assert "--swa-epochs 2" in command_line(config)


@pytest.mark.parametrize("swa_lr, rates", [(0.002, [0.05, 0.005, 0.002]),
                                           (None, [0.05, 0.005, 0.0005])])
def test_swa_lr_holds_the_rate_of_the_averaged_epochs(digits_dir, tmp_path, learning_rates,
                                                      swa_lr, rates):
    """Without batch norm there are no statistics to recalibrate."""
    messages = []
    result = train(small_config(digits_dir, tmp_path, epochs=3, swa_epochs=1, swa_lr=swa_lr,
                                batch_norm=False), progress=False, log=messages.append)
    np.testing.assert_allclose(learning_rates, np.repeat(rates, 8), rtol=1e-15)
    assert [row["lr"] for row in result.history] == pytest.approx(rates, rel=1e-15)
    assert "weights averaged over the 8 steps of the last 1 epoch" in messages
    assert not any("recalibrated" in message for message in messages)


def test_ctrl_c_while_averaging_resumes_exactly(digits_dir, tmp_path, sigint_handler):
    settings = dict(epochs=3, swa_epochs=2, swa_lr=0.01, schedule="cosine")
    whole = train(small_config(digits_dir, tmp_path / "whole", **settings), progress=False,
                  log=lambda m: 0)
    stopped = train(small_config(digits_dir, tmp_path / "cut", **settings), progress=False,
                    log=lambda m: 0, on_batch=ctrl_c_after(1, 2))
    assert stopped.status == "interrupted"
    assert load_checkpoint(stopped.checkpoint).average["count"] == 3
    resumed = train(small_config(digits_dir, tmp_path / "cut", **settings),
                    resume=stopped.checkpoint, progress=False, log=lambda m: 0)
    assert_bit_identical(weights_of(tmp_path / "whole"), weights_of(tmp_path / "cut"))
    final = [load_checkpoint(tmp_path / name / "checkpoint.npz") for name in ("whole", "cut")]
    assert_bit_identical(*(checkpoint.average for checkpoint in final))
    assert final[0].average["count"] == 16
    assert resumed.test == whole.test


@pytest.mark.parametrize("settings, message", [
    (dict(swa_epochs=4), r"--swa-epochs must be between 0 and --epochs \(3\), got 4"),
    (dict(swa_epochs=-1), r"--swa-epochs must be between 0 and --epochs \(3\), got -1"),
    (dict(swa_epochs=1, swa_lr=0.0), "--swa-lr must be a positive number, got 0.0"),
    (dict(swa_epochs=1, swa_lr=float("nan")), "--swa-lr must be a positive number, got nan"),
    (dict(swa_lr=0.01), "--swa-lr sets the rate of the averaged epochs; give --swa-epochs"),
])
def test_an_average_that_cannot_apply_is_refused(settings, message):
    with pytest.raises(ValueError, match="train: " + message):
        TrainConfig(epochs=3, **settings)


@pytest.mark.parametrize("edit, words", [
    (lambda average: average.update({"mean/features.0.weight": np.zeros(3)}),
     "its weight average: WeightAverage.load_state_dict: mean/features.0.weight: expected "
     "shape"),
    (lambda average: average.pop("count"),
     "its weight average: WeightAverage.load_state_dict: missing entry: count"),
    (lambda average: average["mean/features.0.bias"].fill(np.nan),
     "average/mean/features.0.bias hold NaN or infinite values"),
])
def test_a_checkpoint_with_a_broken_weight_average_is_refused(digits_dir, tmp_path, edit,
                                                              words, sigint_handler):
    settings = dict(epochs=2, swa_epochs=1)
    stopped = train(small_config(digits_dir, tmp_path / "cut", **settings), progress=False,
                    log=lambda m: 0, on_batch=ctrl_c_after(1, 1))
    checkpoint = load_checkpoint(stopped.checkpoint)
    edit(checkpoint.average)
    broken = tmp_path / "broken.npz"
    save_checkpoint(broken, checkpoint.model, checkpoint.optimizer, checkpoint.meta,
                    checkpoint.average)
    with pytest.raises(CheckpointError) as info:
        train(small_config(digits_dir, tmp_path / "cut", **settings), resume=broken,
              progress=False, log=lambda m: 0)
    assert str(info.value).startswith(f"checkpoint {broken}: ")
    assert words in str(info.value)


@pytest.mark.gpu
def test_training_on_the_gpu_follows_the_cpu(digits_dir, tmp_path):
    """One float64 epoch on each device: the same data, masks and schedule, so the
    weights agree to rounding (the kernels sum in other orders than NumPy)."""
    cpu = train(small_config(digits_dir, tmp_path / "cpu", epochs=1), progress=False,
                log=lambda m: 0)
    gpu = train(small_config(digits_dir, tmp_path / "gpu", epochs=1, device="cuda"),
                progress=False, log=lambda m: 0)
    a, b = weights_of(tmp_path / "cpu"), weights_of(tmp_path / "gpu")
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-7, atol=1e-9, err_msg=key)
    assert abs(cpu.history[0]["train_loss"] - gpu.history[0]["train_loss"]) < 1e-9
    resumed = train(small_config(digits_dir, tmp_path / "gpu", epochs=2, device="cuda"),
                    resume=tmp_path / "gpu" / "checkpoint.npz", progress=False,
                    log=lambda m: 0)
    assert resumed.epoch == 2


def test_training_on_an_image_folder_with_the_papers_augmentation(tmp_path, capsys):
    """The ImageNet layout, multi-scale training (S in [36, 44], 32x32 crops), flips and
    the RGB colour shift; then predict on one of the files."""
    from PIL import Image
    rng = np.random.default_rng(0)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for split, count in (("train", 12), ("test", 4)):
        for name, colour in colours.items():
            folder = tmp_path / "photos" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (int(rng.integers(40, 60)), int(rng.integers(40, 60)))
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, size + (3,)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
                 "--scale-min", "36", "--scale-max", "44", "--width", "0.0625",
                 "--epochs", "2", "--batch-size", "8", "--val-size", "6", "--lr", "0.02",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "30 training, 6 validation and 12 test images" in printed
    document = json.loads((out / "metrics.json").read_text())
    assert document["data"]["classes"] == ["blue", "green", "red"]
    assert document["data"]["stored_size"] == 44
    assert "--augment" not in document["command"]  # auto: scale, flip, rgb
    picture = tmp_path / "photos" / "test" / "red" / "0.png"
    assert main(["predict", str(out / "checkpoint.npz"), str(picture), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert {row["class"] for row in top} == {"blue", "green", "red"}


def test_eval_with_test_time_flips(digits_dir, tmp_path, capsys):
    """The paper's test-time flips: the mean softmax of each image and its mirror, refused
    for a model trained without flips."""
    plain = tmp_path / "plain"
    flipped = tmp_path / "flipped"
    train(small_config(digits_dir, plain, epochs=1, dtype="float32"), progress=False,
          log=lambda m: 0)
    train(small_config(digits_dir, flipped, epochs=1, dtype="float32", augment="crop,flip"),
          progress=False, log=lambda m: 0)
    with pytest.raises(SystemExit):
        main(["eval", str(plain / "checkpoint.npz"), "--flip"])
    assert "trained without flips" in capsys.readouterr().err
    assert main(["eval", str(flipped / "checkpoint.npz"), "--flip", "--json"]) == 0
    with_flips = json.loads(capsys.readouterr().out)
    assert main(["eval", str(flipped / "checkpoint.npz"), "--json"]) == 0
    without = json.loads(capsys.readouterr().out)
    assert with_flips["flip"] and not without["flip"]
    # mirroring changes the inputs, so the averaged probabilities differ
    assert with_flips["members"][0]["loss"] != without["members"][0]["loss"]
