"""``tinyvgg.profiler``: every op call recorded under its layer, nothing changed, nothing left."""
from types import SimpleNamespace

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import functional as F
from tinyvgg import nn
from tinyvgg.tools import profiler
from tinyvgg.models import vgg
from tinyvgg.tools.profiler import MODEL, NO_LAYER, NOT_PROFILED, profile
from tinyvgg.tensor import Context, active_profiler

#: op calls of one VGG-11-BN training step: forward, and (all of them) backward
VGG11_BN_STEP_CALLS = {"conv3x3": 8, "batch_norm2d": 8, "relu": 10, "maxpool2x2": 5,
                       "adaptive_avg_pool2d": 1, "reshape": 1, "linear": 3, "dropout": 2,
                       "cross_entropy": 1}


def small_vgg(seed=0):
    return vgg("vgg11_bn", num_classes=10, width=1 / 8, head="compact",
               generator=np.random.default_rng(seed))


def batch(seed=1, n=2):
    rng = np.random.default_rng(seed)
    return (tv.tensor(rng.standard_normal((n, 3, 32, 32)).astype(np.float32)),
            rng.integers(0, 10, n))


def step(model, x, labels, seed=5):
    tv.manual_seed(seed)  # the dropout masks
    model.zero_grad()
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    return loss


@pytest.fixture(scope="module")
def profiled_step():
    model = small_vgg()
    x, labels = batch()
    with profile(model) as prof:
        loss = step(model, x, labels)
    return model, prof, loss


def test_every_op_of_the_step_is_counted_forward_and_backward(profiled_step):
    _, prof, _ = profiled_step
    by_op = {g["name"]: g for g in prof.grouped("op")}
    assert {name: g["calls"] for name, g in by_op.items()} == VGG11_BN_STEP_CALLS
    assert {name: g["backward_calls"] for name, g in by_op.items()} == VGG11_BN_STEP_CALLS
    assert len(prof.rows) == sum(VGG11_BN_STEP_CALLS.values())
    assert all(r.forward_ms >= 0 and r.backward_ms >= 0 for r in prof.rows)


def test_op_calls_are_charged_to_the_innermost_layer(profiled_step):
    model, prof, _ = profiled_step
    modules = dict(model.named_modules())
    kinds = {"conv3x3": nn.Conv3x3, "batch_norm2d": nn.BatchNorm2d, "relu": nn.ReLU,
             "maxpool2x2": nn.MaxPool2x2, "linear": nn.Linear, "dropout": nn.Dropout,
             "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d}
    for row in prof.rows:
        if row.op in kinds:
            assert isinstance(modules[row.layer], kinds[row.op]), row
    layers = {r.op: r.layer for r in prof.rows if r.op in ("reshape", "cross_entropy")}
    assert layers == {"reshape": MODEL, "cross_entropy": NO_LAYER}
    convs = [r.layer for r in prof.rows if r.op == "conv3x3"]
    assert convs == ["features.0", "features.4", "features.8", "features.11", "features.15",
                     "features.18", "features.22", "features.25"]
    # the layer table lists the layers in the order they ran
    assert [g["name"] for g in prof.grouped("layer")][:4] == [
        "features.0", "features.1", "features.2", "features.3"]


def test_records_hold_output_and_saved_bytes(profiled_step):
    _, prof, _ = profiled_step
    first = prof.rows[0]
    assert (first.op, first.output_shape, first.device) == ("conv3x3", (2, 8, 32, 32), "cpu")
    assert first.output_bytes == 2 * 8 * 32 * 32 * 4
    relu = next(r for r in prof.rows if r.op == "relu")
    assert relu.saved_bytes == relu.output_bytes  # ReLU keeps its output for backward


def test_tables_and_shares(profiled_step):
    _, prof, _ = profiled_step
    for by in ("op", "layer"):
        groups = prof.grouped(by)
        assert sum(g["share"] for g in groups) == pytest.approx(1.0)
        text = prof.table(by=by)
        lines = text.splitlines()
        assert lines[0].split()[0] == by and "forward ms" in lines[0] and "share" in lines[0]
        assert lines[-1].split()[:3] == ["total", str(len(prof.rows)), str(len(prof.rows))]
        assert len(lines) == len(groups) + 4
    assert "features.25" in prof.table(by="layer") and "conv3x3" in prof.table(by="op")
    total = sum(g["forward_ms"] + g["backward_ms"] for g in prof.grouped("op"))
    assert total == pytest.approx(prof.forward_ms + prof.backward_ms)
    with pytest.raises(ValueError, match="by must be one of 'op', 'layer', got 'module'"):
        prof.table(by="module")


def test_profiled_step_is_bit_identical_to_an_unprofiled_one():
    x, labels = batch()
    plain_model, profiled_model = small_vgg(), small_vgg()
    plain_loss = step(plain_model, x, labels)
    with profile(profiled_model):
        profiled_loss = step(profiled_model, x, labels)
    assert profiled_loss.item() == plain_loss.item()
    for (name, p), (_, q) in zip(plain_model.named_parameters(),
                                 profiled_model.named_parameters()):
        assert np.array_equal(p.grad, q.grad), name


def test_profiling_off_leaves_no_trace():
    model = small_vgg()
    x, labels = batch()
    attributes_before = {name: set(vars(m)) for name, m in model.named_modules()}
    with profile(model) as prof:
        assert active_profiler() is prof
        step(model, x, labels)
    assert active_profiler() is None
    recorded = len(prof.rows)
    loss = F.cross_entropy(model(x), labels)
    assert len(prof.rows) == recorded  # nothing recorded after the block
    # no attribute added to modules or to the contexts of ops run afterwards
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attributes_before
    fresh = Context("x", (True,), "cpu")
    assert set(vars(loss.creator.ctx)) == set(vars(fresh))
    loss.backward()
    assert len(prof.rows) == recorded
    assert all(r.backward_calls == 1 for r in prof.rows)


def test_the_engine_never_calls_a_profiler_that_is_not_recording(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("profiler called while off")
    for method in ("forward", "backward", "enter_layer", "exit_layer"):
        monkeypatch.setattr(profile, method, refuse)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with pytest.raises(AssertionError, match="profiler called while off"):
        with profile(model):
            model(tv.tensor(np.ones((2, 3), np.float32)))
    y = model(tv.tensor(np.ones((2, 3), np.float32))).sum()
    y.backward()  # no profiler: runs untouched


def test_profiles_do_not_nest():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x = tv.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    with profile(model) as outer:
        model(x)
        with pytest.raises(RuntimeError, match="already recording.*do not nest"):
            with profile(model):
                pass
        assert active_profiler() is outer  # the outer one keeps recording
        model(x)
    assert active_profiler() is None
    assert [r.op for r in outer.rows] == ["linear", "relu", "linear", "relu"]
    assert [r.layer for r in outer.rows] == ["0", "1", "0", "1"]


def test_backward_outside_the_block_is_not_recorded_and_inside_gets_its_own_rows():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x = tv.tensor(np.ones((2, 3), np.float32))
    with profile(model) as forward_only:
        y = model(x).sum()
    y.backward()
    assert [(r.op, r.backward_calls) for r in forward_only.rows] == [
        ("linear", 0), ("relu", 0), ("sum", 0)]

    z = model(x).sum()
    with profile(model) as backward_only:
        z.backward()
    assert sorted(r.op for r in backward_only.rows) == ["linear", "relu", "sum"]
    assert all(r.layer == NOT_PROFILED and r.forward_ms is None and r.backward_calls == 1
               for r in backward_only.rows)
    assert {g["name"]: g["calls"] for g in backward_only.grouped("op")} == {
        "sum": 0, "relu": 0, "linear": 0}


def test_retain_graph_records_two_backward_calls_on_the_same_row():
    lin = nn.Linear(3, 2)
    with profile(lin) as prof:
        y = lin(tv.tensor(np.ones((1, 3), np.float32))).sum()
        y.backward(retain_graph=True)
        y.backward()
    assert [(r.op, r.backward_calls) for r in prof.rows] == [("linear", 2), ("sum", 2)]
    assert prof.rows[0].layer == MODEL  # the model given is the layer itself


def test_layers_are_named_by_class_without_a_model_and_errors_unwind_the_layer_stack():
    conv = nn.Conv3x3(3, 2)
    with profile() as prof:
        with pytest.raises(ValueError, match="Conv3x3"):
            conv(tv.tensor(np.ones((1, 5, 4, 4), np.float32)))  # 5 channels, expects 3
        tv.tensor(np.ones(3, np.float32), requires_grad=True).sum()
        conv(tv.tensor(np.ones((1, 3, 4, 4), np.float32)))
    assert [(r.op, r.layer) for r in prof.rows] == [("sum", NO_LAYER), ("conv3x3", "Conv3x3")]


def test_profile_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="profile: model must be a tinyvgg Module or None, "
                                        "got str"):
        profile("vgg16")


def test_cuda_regions_wait_for_the_device(monkeypatch):
    waits = []

    class Device:
        def synchronize(self):
            waits.append("synchronize")
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(Device=Device))
    monkeypatch.setattr(profiler.backend, "cupy_module", lambda: fake_cupy)
    profiler._synchronize("cpu")
    assert waits == []
    profiler._synchronize("cuda")
    assert waits == ["synchronize"]


def test_experiment_profile_writes_its_tables_and_figure(tmp_path):
    from tinyvgg.experiments import run
    lines = []
    result = run("profile", tmp_path, log=lines.append)
    by_op = {g["name"]: g for g in result["by_op"]}
    assert {name: g["calls"] for name, g in by_op.items()} == VGG11_BN_STEP_CALLS
    # the convolutions are where a VGG's time goes (how much depends on the BLAS and
    # the cores that run the products: 90% on two busy cores, under half on sixteen)
    assert result["by_op"][0]["name"] == "conv3x3" and by_op["conv3x3"]["share"] > 0.3
    # features.0-28, avgpool, (model), classifier.0-6, (no layer)
    assert len(result["by_layer"]) == 29 + 1 + 1 + 7 + 1
    assert any(line.startswith("conv3x3") for line in lines)
    assert any(line.startswith("features.25") for line in lines)
    png = tmp_path / "profile.png"
    assert result["figures"] == [str(png)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.gpu
def test_profiled_gpu_step_matches_an_unprofiled_one():
    x, labels = batch()
    x = x.to("cuda")
    plain_model, profiled_model = small_vgg().to("cuda"), small_vgg().to("cuda")
    plain_loss = step(plain_model, x, labels)
    with profile(profiled_model) as prof:
        profiled_loss = step(profiled_model, x, labels)
    assert profiled_loss.item() == plain_loss.item()
    assert {g["name"]: g["backward_calls"] for g in prof.grouped("op")} == VGG11_BN_STEP_CALLS
    assert all(r.device == "cuda" for r in prof.rows)
    for (name, p), (_, q) in zip(plain_model.named_parameters(),
                                 profiled_model.named_parameters()):
        assert np.array_equal(p.grad.get(), q.grad.get()), name
