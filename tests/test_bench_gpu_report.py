"""The GPU benchmark's report, drawn from a stored H100 run: no GPU needed.

benchmarks/bench_gpu.py times kernels only on a GPU, but its tables and plots are
plain functions of the report it stores, so they are checked here on that report."""
import json
import sys
from pathlib import Path

import pytest

from tinyvgg import bench as bench_gpu  # the GPU report's tables and plots are the harness's

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
REPORT = BENCHMARKS / "results" / "gpu-nvidia-h100-80gb-hbm3.json"

sys.path.insert(0, str(BENCHMARKS))
script = pytest.importorskip("bench_gpu")  # its command line


@pytest.fixture(scope="module")
def report():
    return json.loads(REPORT.read_text())


def _totals_row(text, job, step):
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [job, step]:
            return cells
    raise AssertionError(f"no totals row for {job} {step}")


def test_totals_sum_the_layers_with_their_counts(report):
    totals = report["conv_totals"]["64"]
    rows = [r for r in report["convs"] if r["batch"] == 64]
    expected = sum(count * r["ms"]["fwd"]["implicit-gemm"]
                   for r, count in zip(rows, bench_gpu.VGG16_CONV_COUNTS))
    assert totals["fwd"]["ms"]["implicit-gemm"] == pytest.approx(expected)
    # the first layer's input needs no gradient: 12 layers for dx, 13 for the others
    assert sum(c for r, c in zip(rows, bench_gpu.VGG16_CONV_COUNTS) if "dx" in r["jobs"]) == 12


def test_markdown_ratios_shares_and_bandwidth(report):
    text = bench_gpu.markdown(report)
    t = report["conv_totals"]["64"]["fwd"]
    ours, theirs = t["ms"]["implicit-gemm"], t["torch_ms"]["strict"]
    cells = _totals_row(text, "fwd", "implicit-gemm")
    assert float(cells[6]) == pytest.approx(theirs / ours, abs=0.005)  # ratio: their time / ours
    tflops = t["flops"] / ours / 1e9
    assert float(cells[3]) == pytest.approx(tflops, abs=0.05)
    share = 100 * tflops / report["peaks"]["gemm_strict_tflops"]
    assert float(cells[4].rstrip("%")) == pytest.approx(share, abs=0.5)
    rows = [r for r in report["convs"] if r["batch"] == 64]
    moved = sum(c * bench_gpu.conv_bytes(r) for r, c in zip(rows, bench_gpu.VGG16_CONV_COUNTS))
    assert float(cells[5]) == pytest.approx(moved / ours / 1e6, abs=0.5)
    # the TF32 rung is compared with TF32 cuDNN, never with strict FP32
    tf32 = _totals_row(text, "fwd", "tf32-mma")
    assert float(tf32[6]) == pytest.approx(t["torch_ms"]["tf32"] / t["ms"]["tf32-mma"], abs=0.005)
    assert "GPU memory" in text and "Ratio vs strict FP32" in text


def test_conv_bytes_counts_input_weights_and_output_once():
    row = dict(batch=2, c_in=3, c_out=4, size=5)
    assert bench_gpu.conv_bytes(row) == 4 * (2 * 25 * 3 + 9 * 3 * 4 + 2 * 25 * 4)


def test_plots_are_pngs(report, tmp_path):
    written = bench_gpu.plot(report, tmp_path / "gpu")
    assert [p.name for p in written] == ["gpu-ladder.png", "gpu-roofline.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_from_json_rewrites_markdown_and_plots(report, tmp_path, capsys):
    stored = tmp_path / "copy.json"
    stored.write_text(json.dumps(report))
    script.main(["--from-json", str(stored)])
    assert (tmp_path / "copy.md").read_text() == bench_gpu.markdown(report)
    assert (tmp_path / "copy-ladder.png").exists() and (tmp_path / "copy-roofline.png").exists()
