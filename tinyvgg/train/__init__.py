"""Training a VGG on real images: the loop, its validation, its checkpoints and its records.

The package's modules, each importing only those above it:

- :mod:`.config`: :class:`TrainConfig`, the settings of a run, and the command line
  that makes it
- :mod:`.data`: the training, validation and test loaders and their input pipelines
- :mod:`.model`: the VGG a run trains, and the check that its state is finite
- :mod:`.records`: what a run writes and prints (output folder, metrics, curves, lines)
- :mod:`.resume`: the resume policy (which checkpoint, what may change, what is left)
- :mod:`.predict`: predictions, scores, trained models, ensembles and image files
- :mod:`.distributed`: training on several ranks (``mpiexec -n N``): MPI and NCCL, the
  gradient buckets, synchronised batch norm, one rank writing, faults ending every rank
- :mod:`.loop`: :func:`train`, the epoch loop, Ctrl-C and divergence
"""
from .config import (AUGMENTATIONS, DIGIT_DATASETS, EXTENDABLE_SCHEDULES, SCHEDULES,
                     TrainConfig, command_line, parse_augment, saved_config)
from .data import RunData, channel_statistics, input_pipelines, loader_labels, prepare_data
from .model import build_model, non_finite_state, require_finite
from .records import (METRIC_COLUMNS, RUN_FILES, OutputWriteError, plot_curves,
                      write_metrics)
from .resume import (RESUMABLE_OVERRIDES, load_run_checkpoint, read_run_meta,
                     resumed_config)
from .predict import (BORDER_FRACTION, DARK_BACKGROUND_MEAN, TrainedModel,
                      background_warning, evaluate_checkpoints, load_trained,
                      predict_files, predict_probabilities, read_image_file, scores)
from .loop import RunResult, TrainingDiverged, batch_seed, train

__all__ = [
    "AUGMENTATIONS", "DIGIT_DATASETS", "EXTENDABLE_SCHEDULES", "SCHEDULES", "TrainConfig",
    "command_line", "parse_augment", "saved_config",
    "RunData", "channel_statistics", "input_pipelines", "loader_labels", "prepare_data",
    "build_model", "non_finite_state", "require_finite",
    "METRIC_COLUMNS", "RUN_FILES", "OutputWriteError", "plot_curves", "write_metrics",
    "RESUMABLE_OVERRIDES", "load_run_checkpoint", "read_run_meta", "resumed_config",
    "BORDER_FRACTION", "DARK_BACKGROUND_MEAN", "TrainedModel", "background_warning",
    "evaluate_checkpoints", "load_trained", "predict_files", "predict_probabilities",
    "read_image_file", "scores",
    "RunResult", "TrainingDiverged", "batch_seed", "train",
]
