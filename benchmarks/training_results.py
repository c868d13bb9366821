"""Record finished ``tinyvgg train`` runs (and ensembles) in benchmarks/results/.

    python benchmarks/training_results.py runs/mnist-vgg11_bn-w0.25-s0 [more run dirs]
    python benchmarks/training_results.py --ensemble runs/x/snapshot-epoch004.npz runs/x/...

Each run directory holds the ``metrics.json`` that ``tinyvgg train`` wrote; its
command, wall time and test accuracy become one row of
``benchmarks/results/training-<machine>.{json,md}`` (rows with the same command
are replaced). Runs made on a GPU machine are recorded with ``--gpu NAME`` in
``training-<gpu>.{json,md}``. ``--ensemble`` evaluates checkpoints with ``tinyvgg eval
--ensemble`` and records each member's and the ensemble's test accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tinyvgg.bench import machine_info, slug
from tinyvgg.io.fileio import atomic_write
from tinyvgg.train import TrainConfig, command_line, evaluate_checkpoints

#: the results committed with the code, where this script records runs
RESULTS = Path(__file__).resolve().parent / "results"


def run_row(run_dir: Path, commit: str | None, wall_seconds: float | None,
            note: str | None) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not metrics.get("test"):
        raise SystemExit(f"{run_dir}: the run has not finished (no test accuracy yet)")
    wall_seconds = metrics.get("wall_seconds") or wall_seconds
    if wall_seconds is None:
        raise SystemExit(f"{run_dir}: metrics.json has no wall time; pass --wall-seconds "
                         f"(as measured by e.g. /usr/bin/time)")
    # read for the table only: a run trained on a GPU is recorded on machines without one
    config = TrainConfig.from_dict({**metrics["config"], "device": "cpu"})
    curves = None
    if (run_dir / "curves.png").is_file():  # the run's training curves, kept with the table
        curves = f"curves-{run_dir.name}.png"
        atomic_write(RESULTS / curves, (run_dir / "curves.png").read_bytes())
    return {"kind": "run", "curves": curves, "dataset": config.dataset,
            "model": f"{config.model}{'_bn' if config.batch_norm else ''} width {config.width:g}",
            "epochs": len(metrics["history"]),
            "wall_minutes": round(wall_seconds / 60, 1),
            "test_accuracy": metrics["test"]["accuracy"],
            "best_val_accuracy": max((h["val_accuracy"] or 0) for h in metrics["history"]),
            "command": metrics.get("command") or command_line(config),
            "commit": commit, "note": note, "run": str(run_dir)}


def ensemble_row(paths, commit: str | None, note: str | None, flip: bool) -> dict:
    """``tinyvgg eval [--ensemble] [--flip]`` of one or more checkpoints, as a table row."""
    started = time.perf_counter()
    result = evaluate_checkpoints(paths, flip=flip)
    members = [row["accuracy"] for row in result["members"]]
    flips = " --flip" if flip else ""
    several = len(paths) > 1
    return {"kind": "ensemble", "dataset": result["dataset"],
            "model": (f"mean softmax of {len(paths)} checkpoints" if several else
                      "one checkpoint") + (", each image also mirrored" if flip else ""),
            "members_test_accuracy": members, "best_member": max(members),
            "test_accuracy": result["ensemble"]["accuracy"] if several else members[0],
            "wall_minutes": round((time.perf_counter() - started) / 60, 1),
            "command": f"tinyvgg eval{' --ensemble' if several else ''}{flips} " +
                       " ".join(str(p) for p in paths),
            "commit": commit, "note": note}


def markdown(report: dict) -> str:
    m = report["machine"]
    if m.get("gpu"):
        title = f"one {m['gpu']}"
        software = "tinyvgg's CUDA kernels through CuPy (`--device cuda`, float32)"
    else:
        title = f"{m['cpu']} ({m['cores']} cores)"
        software = f"NumPy {m['numpy']} ({m['numpy_blas']}), Python {m['python']}"
    lines = [f"# Training results on {title}", "",
             f"{software}; recorded {m['date']}. Each row is one command, run as shown; wall "
             f"time includes loading the data, validation each epoch and the final test "
             f"pass.", "",
             "| dataset | model | epochs | wall time | test accuracy | command | commit | note |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        accuracy = f"**{100 * row['test_accuracy']:.2f}%**"
        if row["kind"] == "ensemble":
            members = ", ".join(f"{100 * a:.2f}%" for a in row["members_test_accuracy"])
            accuracy += f" (members {members})"
        epochs = row.get("epochs", "-")
        if row.get("curves"):
            accuracy += f" ([curves]({row['curves']}))"
        lines.append(f"| {row['dataset']} | {row['model']} | {epochs} | "
                     f"{row['wall_minutes']:.1f} min | {accuracy} | `{row['command']}` | "
                     f"{row['commit']} | {row.get('note') or ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--ensemble", action="store_true",
                        help="the paths are checkpoints to evaluate (as one ensemble if several)")
    parser.add_argument("--flip", action="store_true",
                        help="with --ensemble: test-time flips (tinyvgg eval --flip)")
    parser.add_argument("--commit", help="the commit whose code made the run "
                                         "(default: the current one)")
    parser.add_argument("--wall-seconds", type=float,
                        help="the run's wall time, for metrics.json files that lack it")
    parser.add_argument("--gpu", metavar="NAME",
                        help="the runs trained on this GPU (e.g. 'NVIDIA H100 80GB HBM3'): "
                             "recorded in training-<gpu>.{json,md}")
    parser.add_argument("--note", help="a remark for the table (e.g. what shared the machine)")
    args = parser.parse_args(argv)
    machine = machine_info()
    commit = args.commit or machine["commit"]
    if args.gpu:
        machine = {"gpu": args.gpu, "date": machine["date"], "commit": machine["commit"]}
    where = args.gpu or f"{machine['cpu']} {machine['cores']}cores"
    stem = RESULTS / f"training-{slug(where)}"
    report = {"machine": machine, "rows": []}
    if stem.with_suffix(".json").exists():
        report["rows"] = json.loads(stem.with_suffix(".json").read_text())["rows"]
    new = [ensemble_row(args.paths, commit, args.note, args.flip)] if args.ensemble else \
        [run_row(path, commit, args.wall_seconds, args.note) for path in args.paths]
    commands = {row["command"] for row in new}
    report["rows"] = [r for r in report["rows"] if r["command"] not in commands] + new
    atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
