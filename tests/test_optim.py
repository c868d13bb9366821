"""tinyvgg.optim: SGD against torch.optim.SGD and through a resume, every scheduler against
torch.optim.lr_scheduler and through a resume, their argument checks and make_scheduler."""
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvgg as tv
from helpers import randn
from tinyvgg import optim
from tinyvgg.nn import Linear, Parameter, ReLU, Sequential

#: (momentum, dampening, weight_decay, nesterov): every branch of the update rule
SETTINGS = [
    (0.0, 0.0, 0.0, False),
    (0.0, 0.0, 5e-4, False),
    (0.9, 0.0, 0.0, False),
    (0.9, 0.0, 5e-4, False),
    (0.9, 0.5, 0.0, False),
    (0.5, 0.3, 0.05, False),
    (0.9, 0.0, 0.0, True),
    (0.8, 0.0, 0.02, True),
]
SETTING_IDS = [f"m{m}-d{d}-wd{w}" + ("-nesterov" if n else "") for m, d, w, n in SETTINGS]
SHAPES = [(3, 4), (4,), (2, 1, 3, 3)]
LR = 0.1


def settings_dict(momentum, dampening, weight_decay, nesterov):
    return dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov)


def fresh_params(seed=0):
    return [Parameter(randn(seed + i, shape)) for i, shape in enumerate(SHAPES)]


def gradient(step, index):
    """The gradient of parameter ``index`` at ``step``; the last parameter gets none
    in the first two steps, so its velocity starts late."""
    if index == len(SHAPES) - 1 and step < 2:
        return None
    return randn(100 + 10 * step + index, SHAPES[index])


def run(optimizer, params, steps):
    for step in steps:
        for index, p in enumerate(params):
            p.grad = gradient(step, index)
        optimizer.step()


# --- SGD against PyTorch ------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov", SETTINGS,
                         ids=SETTING_IDS)
def test_sgd_matches_torch_optim_sgd(momentum, dampening, weight_decay, nesterov):
    torch = pytest.importorskip("torch")
    settings = settings_dict(momentum, dampening, weight_decay, nesterov)
    ours = fresh_params()
    theirs = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in ours]
    optimizer = optim.SGD(ours, lr=LR, **settings)
    reference = torch.optim.SGD(theirs, lr=LR, **settings)
    for step in range(6):
        for index, (p, q) in enumerate(zip(ours, theirs)):
            g = gradient(step, index)
            p.grad = g
            q.grad = None if g is None else torch.from_numpy(g.copy())
        optimizer.step()
        reference.step()
        for name, p, q in zip(optimizer.names, ours, theirs):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-15, atol=1e-15)
            buffer = reference.state[q].get("momentum_buffer")
            if buffer is None:
                assert name not in optimizer.velocities
            else:
                np.testing.assert_allclose(optimizer.velocities[name], buffer.numpy(),
                                           rtol=1e-15, atol=1e-15)


def test_sgd_trains_a_model_through_backward_and_zero_grad():
    tv.manual_seed(0)
    model = Sequential(Linear(3, 8, dtype=np.float64), ReLU(), Linear(8, 2, dtype=np.float64))
    x = tv.tensor(randn(1, (16, 3)))
    y = np.arange(16) % 2
    optimizer = optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert optimizer.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        assert all(p.grad is None for p in model.parameters())
        loss = tv.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert set(optimizer.velocities) == set(optimizer.names)
    assert optimizer.step_counts == {name: 20 for name in optimizer.names}


def test_parameters_without_gradients_are_left_alone():
    params = fresh_params()
    before = [p.data.copy() for p in params]
    optimizer = optim.SGD(params, lr=LR, momentum=0.9, weight_decay=0.1)
    params[0].grad = np.ones(SHAPES[0])
    optimizer.step()
    assert not np.array_equal(params[0].data, before[0])
    for p, b in zip(params[1:], before[1:]):
        np.testing.assert_array_equal(p.data, b)  # weight decay does not touch them either
    assert list(optimizer.velocities) == ["p0"]
    assert optimizer.step_counts == {"p0": 1, "p1": 0, "p2": 0}


def test_zero_grad_sets_gradients_to_none():
    params = fresh_params()
    for p in params:
        p.grad = np.ones(p.shape)
    optimizer = optim.SGD(params, lr=LR)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)
    optimizer.step()  # nothing has a gradient: nothing happens
    assert optimizer.step_counts == {"p0": 0, "p1": 0, "p2": 0}


def test_changing_momentum_from_zero_starts_the_velocity_like_torch():
    params = fresh_params()
    optimizer = optim.SGD(params, lr=LR)
    run(optimizer, params, range(2))
    assert optimizer.velocities == {}
    optimizer.momentum = 0.9
    run(optimizer, params, [2])
    # the first momentum step sets v to the gradient instead of blending it with zeros
    np.testing.assert_array_equal(optimizer.velocities["p0"], gradient(2, 0))


# --- SGD state ---------------------------------------------------------------------------

def test_state_dict_holds_arrays_by_name():
    params = fresh_params()
    optimizer = optim.SGD(params, lr=LR, momentum=0.9, weight_decay=5e-4)
    run(optimizer, params, range(2))
    state = optimizer.state_dict()
    assert set(state) == {"lr", "momentum", "dampening", "weight_decay", "nesterov",
                          "steps/p0", "steps/p1", "steps/p2", "velocity/p0", "velocity/p1"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["lr"].shape == () and state["lr"].dtype == np.float64 and state["lr"] == LR
    assert state["nesterov"].dtype == np.bool_ and not state["nesterov"]
    assert state["steps/p0"].dtype == np.int64 and state["steps/p0"] == 2
    assert state["steps/p2"] == 0
    state["velocity/p0"][...] = 0  # a copy: the optimiser's velocity is untouched
    assert np.any(optimizer.velocities["p0"] != 0)


@pytest.mark.parametrize("through_file", [False, True], ids=["dict", "npz"])
@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov", SETTINGS,
                         ids=SETTING_IDS)
def test_resuming_from_the_state_dict_continues_bit_for_bit(
        momentum, dampening, weight_decay, nesterov, through_file, tmp_path):
    settings = settings_dict(momentum, dampening, weight_decay, nesterov)
    steps = 6
    params = fresh_params()
    uninterrupted = optim.SGD(params, lr=LR, **settings)
    run(uninterrupted, params, range(steps))

    for stop in (1, 3):  # p2 has no gradient and no velocity yet after one step
        first = fresh_params()
        optimizer = optim.SGD(first, lr=LR, **settings)
        run(optimizer, first, range(stop))
        state = optimizer.state_dict()
        if through_file:
            np.savez(tmp_path / "optimizer.npz", **state)
            with np.load(tmp_path / "optimizer.npz", allow_pickle=False) as saved:
                state = {key: saved[key] for key in saved.files}
        resumed_params = [Parameter(p.data.copy()) for p in first]
        resumed = optim.SGD(resumed_params, lr=123.0)  # every setting comes from the state
        resumed.load_state_dict(state)
        run(resumed, resumed_params, range(stop, steps))
        for p, q in zip(resumed_params, params):
            np.testing.assert_array_equal(p.data, q.data)
        assert resumed.step_counts == uninterrupted.step_counts
        assert (resumed.lr, resumed.momentum, resumed.nesterov) == (LR, momentum, nesterov)


def test_load_state_dict_casts_velocities_to_the_parameter_dtype():
    params = [Parameter(randn(0, (3,), np.float32))]
    optimizer = optim.SGD(params, lr=LR, momentum=0.9)
    state = {"lr": np.array(0.5), "momentum": np.array(0.9), "dampening": np.array(0.0),
             "weight_decay": np.array(0.0), "nesterov": np.array(False),
             "steps/p0": np.array(4), "velocity/p0": np.arange(3.0)}
    optimizer.load_state_dict(state)
    assert optimizer.velocities["p0"].dtype == np.float32
    state["velocity/p0"][...] = 7  # a copy, not a view of the caller's array
    np.testing.assert_array_equal(optimizer.velocities["p0"], [0, 1, 2])
    assert optimizer.lr == 0.5 and optimizer.step_counts == {"p0": 4}


def saved_state():
    params = fresh_params()
    optimizer = optim.SGD(params, lr=LR, momentum=0.9)
    run(optimizer, params, range(3))
    return optimizer.state_dict()


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("steps/p1"), ["missing entries: steps/p1"]),
    (lambda s: s.pop("momentum"), ["missing entries: momentum"]),
    (lambda s: s.update({"velocity/fc.weight": np.zeros(2)}),
     ["entries for no parameter", "velocity/fc.weight"]),
    (lambda s: s.update({"steps/p9": np.array(1)}), ["entries for no parameter", "steps/p9"]),
    (lambda s: s.update({"velocity/p0": np.zeros((4, 3))}),
     ["velocity/p0: expected shape (3, 4), got (4, 3)"]),
    (lambda s: s.update({"velocity/p0": np.zeros((3, 4), np.int64)}),
     ["velocity/p0 must be floating point"]),
    (lambda s: s.update({"steps/p0": np.array(-1)}), ["steps/p0 must be a count >= 0"]),
    (lambda s: s.update({"lr": np.array([0.1, 0.2])}), ["lr must be a single value"]),
    (lambda s: s.update({"lr": np.array(-1.0)}), ["lr must be a finite number >= 0"]),
    (lambda s: s.update({"nesterov": np.array(1)}), ["nesterov must be a boolean"]),
    (lambda s: s.update({"nesterov": np.array(True), "dampening": np.array(0.5)}),
     ["nesterov momentum needs", "dampening 0.5"]),
    (lambda s: (s.pop("steps/p2"), s.update({"velocity/x": np.zeros(1)})),
     ["missing entries: steps/p2", "entries for no parameter of this optimiser: velocity/x"]),
])
def test_load_state_dict_refuses_a_mismatched_state_and_changes_nothing(edit, words):
    state = saved_state()
    edit(state)
    params = fresh_params(seed=5)
    optimizer = optim.SGD(params, lr=0.01)
    with pytest.raises((ValueError, TypeError)) as info:
        optimizer.load_state_dict(state)
    message = str(info.value)
    assert message.startswith("SGD.load_state_dict:")
    for word in words:
        assert word in message, (word, message)
    assert optimizer.lr == 0.01 and optimizer.momentum == 0.0
    assert optimizer.velocities == {} and optimizer.step_counts == {"p0": 0, "p1": 0, "p2": 0}


def test_load_state_dict_wants_a_mapping():
    with pytest.raises(TypeError, match="SGD.load_state_dict: expected a dict of arrays, "
                                        "got list"):
        optim.SGD(fresh_params(), lr=LR).load_state_dict([1, 2])


# --- SGD argument checks -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, words", [
    (dict(lr=-0.1), ValueError, ["lr", ">= 0", "-0.1"]),
    (dict(lr=float("inf")), ValueError, ["lr", "finite"]),
    (dict(lr=True), TypeError, ["lr", "number", "bool"]),
    (dict(lr="0.1"), TypeError, ["lr", "number", "str"]),
    (dict(momentum=-0.9), ValueError, ["momentum", ">= 0"]),
    (dict(weight_decay=-5e-4), ValueError, ["weight_decay", ">= 0"]),
    (dict(dampening=float("nan")), ValueError, ["dampening", "finite"]),
    (dict(nesterov=True), ValueError, ["nesterov", "momentum > 0", "momentum 0"]),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
     ["nesterov", "dampening 0", "dampening 0.1"]),
    (dict(nesterov="yes", momentum=0.9), TypeError, ["nesterov", "True or False"]),
])
def test_sgd_rejects_bad_hyperparameters(kwargs, error, words):
    kwargs = {"lr": LR, **kwargs}
    with pytest.raises(error) as info:
        optim.SGD(fresh_params(), **kwargs)
    message = str(info.value)
    assert message.startswith("SGD:")
    for word in words:
        assert word in message, (word, message)


def test_step_checks_a_learning_rate_set_after_construction():
    params = fresh_params()
    optimizer = optim.SGD(params, lr=LR)
    optimizer.lr = float("nan")
    params[0].grad = np.ones(SHAPES[0])
    before = params[0].data.copy()
    with pytest.raises(ValueError, match="SGD.step: lr must be a finite number"):
        optimizer.step()
    np.testing.assert_array_equal(params[0].data, before)


def test_step_names_the_parameter_with_a_bad_gradient():
    model = Sequential(Linear(3, 2, dtype=np.float64))
    optimizer = optim.SGD(model.named_parameters(), lr=LR)
    model[0].weight.grad = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"SGD.step: parameter 0.weight: sgd_step_: grad must "
                                         r"have shape \(2, 3\), got \(3, 2\)"):
        optimizer.step()


@pytest.mark.parametrize("params, error, words", [
    ([], ValueError, ["SGD: params is empty"]),
    (Parameter(np.zeros(3)), TypeError, ["single Parameter", "wrap it in a list"]),
    (42, TypeError, ["iterable of parameters", "got int"]),
    ({"w": np.zeros(3)}, TypeError, ["w must be a Parameter, got ndarray", "state_dict"]),
    ([np.zeros(3)], TypeError, ["p0 must be a Parameter, got ndarray"]),
    ([("w", Parameter(np.zeros(3))), Parameter(np.zeros(3))], TypeError, ["not a mixture"]),
    ([("w", Parameter(np.zeros(3))), ("w", Parameter(np.zeros(2)))], ValueError,
     ["names must be unique", "w more than once"]),
    ([(3, Parameter(np.zeros(3)))], TypeError, ["item 0", "string name"]),
])
def test_sgd_rejects_bad_parameter_lists(params, error, words):
    with pytest.raises(error) as info:
        optim.SGD(params, lr=LR)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_sgd_refuses_a_parameter_listed_twice():
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="SGD: the same parameter is listed twice, as p0 and p1"):
        optim.SGD([p, p], lr=LR)


def test_sgd_takes_a_dict_of_named_parameters():
    params = dict(zip("abc", fresh_params()))
    optimizer = optim.SGD(params, lr=LR)
    assert optimizer.names == ["a", "b", "c"]
    assert "SGD(3 parameters, lr=0.1" in repr(optimizer)


# --- SGD on the GPU ------------------------------------------------------------------------

@pytest.mark.gpu
def test_gpu_velocities_live_on_the_gpu_and_resume_there():
    cupy = tv.backend.cupy_module()
    cpu_params = fresh_params()
    gpu_params = [Parameter(cupy.asarray(p.data)) for p in cpu_params]
    settings = dict(lr=LR, momentum=0.9, weight_decay=5e-4, nesterov=True)
    cpu, gpu = optim.SGD(cpu_params, **settings), optim.SGD(gpu_params, **settings)
    for step in range(2):
        for index, (p, q) in enumerate(zip(cpu_params, gpu_params)):
            g = gradient(step, index)
            p.grad, q.grad = g, None if g is None else cupy.asarray(g)
        cpu.step()
        gpu.step()
    assert all(tv.backend.device_of(v) == "cuda" for v in gpu.velocities.values())
    state = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    resumed = optim.SGD(gpu_params, lr=0.0)
    resumed.load_state_dict(state)
    assert all(tv.backend.device_of(v) == "cuda" for v in resumed.velocities.values())
    for step in range(2, 4):
        for index, (p, q) in enumerate(zip(cpu_params, gpu_params)):
            g = gradient(step, index)
            p.grad, q.grad = g, cupy.asarray(g)
        cpu.step()
        resumed.step()
    for p, q in zip(cpu_params, gpu_params):
        np.testing.assert_array_equal(q.data.get(), p.data)  # the kernel rounds as NumPy does


# --- schedulers ------------------------------------------------------------------------------

BASE_LR = 0.1


def our_optimizer(lr=BASE_LR):
    return optim.SGD([Parameter(np.zeros(2))], lr=lr)


def torch_optimizer(torch, lr=BASE_LR):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], lr=lr)


def torch_lrs(torch_scheduler, epochs, stepper=None):
    optimizer = torch_scheduler.optimizer
    lrs = [optimizer.param_groups[0]["lr"]]
    for epoch in range(epochs):
        optimizer.step()  # the order torch expects; with no gradients it changes nothing
        (stepper or (lambda s, e: s.step()))(torch_scheduler, epoch)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def our_lrs(scheduler, epochs, stepper=None):
    lrs = [scheduler.optimizer.lr]
    for epoch in range(epochs):
        (stepper or (lambda s, e: s.step()))(scheduler, epoch)
        assert scheduler.get_last_lr() == scheduler.optimizer.lr
        lrs.append(scheduler.optimizer.lr)
    return lrs


EPOCHS = 30


@pytest.mark.torch
@pytest.mark.parametrize("step_size, gamma", [(3, 0.1), (5, 0.5), (1, 0.9), (40, 0.1)])
def test_step_lr_matches_torch(step_size, gamma):
    torch = pytest.importorskip("torch")
    theirs = torch_lrs(torch.optim.lr_scheduler.StepLR(torch_optimizer(torch), step_size,
                                                       gamma), EPOCHS)
    ours = our_lrs(optim.StepLR(our_optimizer(), step_size, gamma), EPOCHS)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)  # closed form vs repeated products


@pytest.mark.torch
@pytest.mark.parametrize("milestones, gamma", [([5, 10, 20], 0.1), ([8, 3, 3], 0.5), ([], 0.1),
                                               ([1, 29], 0.2)])
def test_multistep_lr_matches_torch(milestones, gamma):
    torch = pytest.importorskip("torch")
    theirs = torch_lrs(torch.optim.lr_scheduler.MultiStepLR(torch_optimizer(torch), milestones,
                                                            gamma), EPOCHS)
    ours = our_lrs(optim.MultiStepLR(our_optimizer(), milestones, gamma), EPOCHS)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)


@pytest.mark.torch
@pytest.mark.parametrize("T_max, eta_min", [(10, 0.0), (7, 1e-3), (30, 5e-4), (1, 0.0)])
def test_cosine_annealing_matches_torch(T_max, eta_min):
    torch = pytest.importorskip("torch")
    theirs = torch_lrs(torch.optim.lr_scheduler.CosineAnnealingLR(torch_optimizer(torch), T_max,
                                                                  eta_min), EPOCHS + 5)
    ours = our_lrs(optim.CosineAnnealingLR(our_optimizer(), T_max, eta_min), EPOCHS + 5)
    # torch multiplies ratios epoch by epoch; near eta_min = 0 that leaves ~1e-16 absolute
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_cosine_annealing_closed_form_by_hand():
    scheduler = optim.CosineAnnealingLR(our_optimizer(), T_max=4, eta_min=0.02)
    lrs = our_lrs(scheduler, 8)
    expected = [0.02 + 0.08 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(9)]
    assert lrs == expected
    assert lrs[4] == 0.02 and lrs[8] == pytest.approx(BASE_LR)  # down at T_max, up again


#: accuracies with rises, a long plateau, improvements below the 1e-4 relative threshold
#: (0.5 -> 0.50004), a NaN and a late rise
METRICS = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.35, 0.5, 0.50004, 0.50003, 0.5, 0.49, 0.6, 0.6,
           float("nan"), 0.6, 0.61, 0.61, 0.605, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.71,
           0.71, 0.71]

PLATEAU_SETTINGS = [
    dict(mode="max"),
    dict(mode="max", patience=0),
    dict(mode="max", patience=1, cooldown=2),
    dict(mode="max", factor=0.5, patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", factor=0.1, patience=0, min_lr=2e-4),
    dict(mode="min", patience=1, cooldown=1),
    dict(mode="min", factor=0.3, patience=2, threshold=0.01, threshold_mode="abs", cooldown=3),
]


@pytest.mark.torch
@pytest.mark.parametrize("settings", PLATEAU_SETTINGS,
                         ids=["-".join(f"{k}{v}" for k, v in s.items()) for s in PLATEAU_SETTINGS])
def test_reduce_on_plateau_matches_torch(settings):
    torch = pytest.importorskip("torch")
    defaults = dict(mode="max", factor=0.1, patience=2, threshold=1e-4, threshold_mode="rel",
                    cooldown=0, min_lr=0.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_optimizer(torch),
                                                           **{**defaults, **settings})
    scheduler = optim.ReduceLROnPlateau(our_optimizer(), **settings)
    reductions = 0
    for metric in METRICS:
        reference.step(metric)
        scheduler.step(metric)
        assert scheduler.optimizer.lr == reference.optimizer.param_groups[0]["lr"]
        assert scheduler.num_bad_epochs == reference.num_bad_epochs
        assert scheduler.cooldown_counter == reference.cooldown_counter
        assert scheduler.best == reference.best
        assert scheduler.last_epoch == reference.last_epoch
        reductions += scheduler.get_last_lr() != BASE_LR
    assert reductions > 0  # the script does reach a plateau


def test_reduce_on_plateau_divides_by_ten_when_accuracy_stalls():
    scheduler = optim.ReduceLROnPlateau(our_optimizer(0.01))  # the paper's rule, patience 2
    lrs = []
    for accuracy in [0.3, 0.4, 0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5]:
        scheduler.step(accuracy)
        lrs.append(scheduler.get_last_lr())
    assert lrs == pytest.approx([0.01] * 4 + [0.001] * 4 + [0.0001])


def test_reduce_on_plateau_takes_a_one_element_tensor():
    scheduler = optim.ReduceLROnPlateau(our_optimizer())
    scheduler.step(tv.tensor(np.array([0.75])))
    scheduler.step(np.float32(0.5))
    assert scheduler.best == 0.75 and scheduler.num_bad_epochs == 1
    with pytest.raises(TypeError, match="ReduceLROnPlateau.step: metric must be a number, "
                                        "got str"):
        scheduler.step("0.9")


def warm_restart_stepper(batches):
    def stepper(scheduler, epoch):
        for i in range(batches):
            scheduler.step(epoch + i / batches)
    return stepper


@pytest.mark.torch
@pytest.mark.parametrize("T_0, T_mult, eta_min", [(3, 1, 0.0), (2, 2, 1e-3), (1, 3, 0.0),
                                                  (5, 1, 1e-4), (4, 2, 0.0)])
@pytest.mark.parametrize("batches", [None, 1, 7], ids=["per-epoch", "1-batch", "7-batches"])
def test_warm_restarts_match_torch(T_0, T_mult, eta_min, batches):
    torch = pytest.importorskip("torch")
    stepper = None if batches is None else warm_restart_stepper(batches)
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        torch_optimizer(torch), T_0, T_mult, eta_min)
    scheduler = optim.CosineAnnealingWarmRestarts(our_optimizer(), T_0, T_mult, eta_min)
    assert our_lrs(scheduler, EPOCHS, stepper) == torch_lrs(reference, EPOCHS, stepper)
    assert (scheduler.T_cur, scheduler.T_i, scheduler.last_epoch) == \
        (reference.T_cur, reference.T_i, reference.last_epoch)


@pytest.mark.torch
def test_warm_restarts_interleave_epoch_and_plain_steps_like_torch():
    torch = pytest.importorskip("torch")
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(torch_optimizer(torch), 3, 2)
    scheduler = optim.CosineAnnealingWarmRestarts(our_optimizer(), 3, 2)
    for epoch in [None, None, 4.5, None, None, 2.25, None, 20, None, 0.0, None]:
        reference.step(epoch)
        scheduler.step(epoch)
        assert scheduler.optimizer.lr == reference.optimizer.param_groups[0]["lr"]
        assert (scheduler.T_cur, scheduler.T_i) == (reference.T_cur, reference.T_i)


@pytest.mark.torch
@given(T_0=st.integers(1, 6), T_mult=st.integers(1, 2),
       epoch=st.floats(0, 200, allow_nan=False, allow_infinity=False))
def test_warm_restarts_at_any_epoch_match_torch(T_0, T_mult, epoch):
    torch = pytest.importorskip("torch")
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(torch_optimizer(torch),
                                                                     T_0, T_mult, 1e-3)
    scheduler = optim.CosineAnnealingWarmRestarts(our_optimizer(), T_0, T_mult, 1e-3)
    reference.step(epoch)
    scheduler.step(epoch)
    assert scheduler.optimizer.lr == reference.optimizer.param_groups[0]["lr"]
    assert 0 <= scheduler.T_cur < scheduler.T_i


def test_warm_restarts_restart_exactly_at_a_cycle_boundary():
    # cycles of 1, 3, 9, 27, 81 epochs end at epoch 121; log(243, 3) rounds to 4.999...,
    # which would put the restart a cycle late
    scheduler = optim.CosineAnnealingWarmRestarts(our_optimizer(), T_0=1, T_mult=3)
    scheduler.step(121)
    assert (scheduler.T_cur, scheduler.T_i) == (0, 243)
    assert scheduler.get_last_lr() == BASE_LR


@pytest.mark.parametrize("T_0, T_mult, total, expected", [
    (5, 1, 15, [5, 10, 15]),
    (2, 2, 14, [2, 6, 14]),
    (2, 2, 13, [2, 6]),
    (3, 1, 10, [3, 6, 9]),
    (1, 3, 40, [1, 4, 13, 40]),
    (7, 1, 6, []),
    (4, 2, 0, []),
])
def test_restart_epochs(T_0, T_mult, total, expected):
    scheduler = optim.CosineAnnealingWarmRestarts(our_optimizer(), T_0, T_mult)
    ends = scheduler.restart_epochs(total)
    assert ends == expected
    # after each listed epoch the schedule is back at base_lr: a cycle has just finished
    lrs = our_lrs(scheduler, total)
    assert [e for e in range(1, total + 1) if lrs[e] == BASE_LR] == ends


def test_constant_keeps_the_learning_rate_and_counts_epochs():
    optimizer = our_optimizer(0.05)
    scheduler = optim.Constant(optimizer)
    assert our_lrs(scheduler, 5) == [0.05] * 6
    assert scheduler.last_epoch == 5


def test_constructing_a_scheduler_starts_at_epoch_zero_and_base_lr():
    optimizer = our_optimizer(0.2)
    for name in optim.SCHEDULERS:
        scheduler = optim.make_scheduler(name, optimizer, epochs=9)
        assert scheduler.base_lr == 0.2 and scheduler.last_epoch == 0
        assert optimizer.lr == scheduler.get_last_lr() == 0.2


# --- scheduler state ---------------------------------------------------------------------

def drive(scheduler, epochs, start=0):
    """Step ``scheduler`` as a training loop would for epochs [start, start + epochs);
    the learning rates it sets."""
    lrs = []
    for epoch in range(start, start + epochs):
        if scheduler.per_batch:
            for i in range(4):
                scheduler.step(epoch + i / 4)
                lrs.append(scheduler.get_last_lr())
        elif scheduler.needs_metric:
            scheduler.step(METRICS[epoch % len(METRICS)])
        else:
            scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


SCHEDULER_OPTIONS = [
    ("constant", {}),
    ("step", {"step_size": 4, "gamma": 0.5}),
    ("multistep", {"milestones": [3, 9, 9, 17]}),
    ("plateau", {"patience": 1, "cooldown": 1, "factor": 0.5}),
    ("plateau", {"mode": "min", "threshold_mode": "abs", "min_lr": 0.01}),
    ("cosine", {"eta_min": 1e-3}),
    ("warm-restarts", {"T_0": 3, "T_mult": 2, "eta_min": 1e-4}),
]


@pytest.mark.parametrize("name, options", SCHEDULER_OPTIONS,
                         ids=[f"{name}-{i}" for i, (name, _) in enumerate(SCHEDULER_OPTIONS)])
@pytest.mark.parametrize("stop", [0, 1, 7, 13])
def test_scheduler_resume_continues_identically(name, options, stop):
    epochs = 24
    uninterrupted = drive(optim.make_scheduler(name, our_optimizer(), epochs, **options), epochs)
    scheduler = optim.make_scheduler(name, our_optimizer(), epochs, **options)
    before = drive(scheduler, stop)
    state = json.loads(json.dumps(scheduler.state_dict(), allow_nan=False))  # strict JSON
    assert state["kind"] == name
    optimizer = our_optimizer(lr=0.5)  # the resumed run gets its learning rate from the state
    resumed = optim.make_scheduler(name, optimizer, epochs, **options)
    resumed.load_state_dict(state)
    assert optimizer.lr == scheduler.get_last_lr()
    assert resumed.state_dict() == scheduler.state_dict()
    assert before + drive(resumed, epochs - stop, start=stop) == uninterrupted


def test_state_dicts_hold_plain_json_values():
    for name, options in SCHEDULER_OPTIONS:
        scheduler = optim.make_scheduler(name, our_optimizer(), 10, **options)
        drive(scheduler, 2)
        for key, value in scheduler.state_dict().items():
            values = value if isinstance(value, list) else [value]
            assert all(v is None or type(v) in (int, float, bool, str) for v in values), \
                (name, key, value)


def test_plateau_state_keeps_no_best_as_none():
    scheduler = optim.ReduceLROnPlateau(our_optimizer())
    assert scheduler.state_dict()["best"] is None
    resumed = optim.ReduceLROnPlateau(our_optimizer())
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.best == -math.inf


@pytest.mark.parametrize("edit, error, words", [
    (lambda s: s.update(kind="cosine"), ValueError,
     ["expected the state of a 'step' scheduler", "got kind 'cosine'"]),
    (lambda s: s.pop("kind"), ValueError, ["got kind None"]),
    (lambda s: s.pop("last_epoch"), ValueError, ["missing keys: last_epoch"]),
    (lambda s: s.update(T_cur=1), ValueError, ["unknown keys: T_cur"]),
    (lambda s: s.update(last_epoch=2.5), TypeError, ["last_epoch must be an integer"]),
    (lambda s: s.update(step_size=0), ValueError, ["StepLR: step_size must be an integer >= 1"]),
    (lambda s: s.update(last_lr=None), TypeError, ["last_lr must be a number"]),
])
def test_scheduler_load_refuses_a_mismatched_state_and_changes_nothing(edit, error, words):
    state = optim.StepLR(our_optimizer(), 2).state_dict()
    edit(state)
    optimizer = our_optimizer(0.3)
    scheduler = optim.StepLR(optimizer, 5, gamma=0.5)
    with pytest.raises(error) as info:
        scheduler.load_state_dict(state)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert (scheduler.step_size, scheduler.gamma, scheduler.last_epoch) == (5, 0.5, 0)
    assert optimizer.lr == 0.3


def test_warm_restarts_load_checks_the_cycle_position():
    state = optim.CosineAnnealingWarmRestarts(our_optimizer(), 3).state_dict()
    state["T_cur"] = 3.5
    with pytest.raises(ValueError, match=r"T_cur must lie in \[0, T_i=3\), got 3.5"):
        optim.CosineAnnealingWarmRestarts(our_optimizer(), 3).load_state_dict(state)


# --- scheduler argument checks -------------------------------------------------------------------

@pytest.mark.parametrize("make, error, words", [
    (lambda o: optim.StepLR(o, 0), ValueError, ["StepLR: step_size must be an integer >= 1"]),
    (lambda o: optim.StepLR(o, 2.0), TypeError, ["StepLR: step_size must be an integer"]),
    (lambda o: optim.StepLR(o, 2, gamma=-0.1), ValueError, ["StepLR: gamma", ">= 0"]),
    (lambda o: optim.MultiStepLR(o, 5), TypeError, ["MultiStepLR: milestones must be a list"]),
    (lambda o: optim.MultiStepLR(o, [0, 3]), ValueError, ["each milestone", ">= 1, got 0"]),
    (lambda o: optim.CosineAnnealingLR(o, 0), ValueError, ["CosineAnnealingLR: T_max"]),
    (lambda o: optim.CosineAnnealingLR(o, 5, eta_min=float("nan")), ValueError,
     ["CosineAnnealingLR: eta_min must be a finite number"]),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 0), ValueError,
     ["CosineAnnealingWarmRestarts: T_0 must be an integer >= 1"]),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 2, T_mult=0), ValueError, ["T_mult"]),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 2).step(-1), ValueError,
     ["CosineAnnealingWarmRestarts.step: epoch must be a finite number >= 0"]),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 2).restart_epochs(3.5), TypeError,
     ["restart_epochs: total_epochs must be an integer"]),
    (lambda o: optim.ReduceLROnPlateau(o, mode="maximum"), ValueError,
     ["ReduceLROnPlateau: mode must be 'min' or 'max', got 'maximum'"]),
    (lambda o: optim.ReduceLROnPlateau(o, threshold_mode="relative"), ValueError,
     ["threshold_mode must be 'rel' or 'abs'"]),
    (lambda o: optim.ReduceLROnPlateau(o, factor=1.0), ValueError, ["factor must be < 1"]),
    (lambda o: optim.ReduceLROnPlateau(o, patience=-1), ValueError, ["patience"]),
    (lambda o: optim.ReduceLROnPlateau(o, min_lr=-1.0), ValueError, ["min_lr"]),
    (lambda o: optim.StepLR(object(), 2), TypeError,
     ["StepLR: optimizer must have a numeric lr attribute", "got object"]),
])
def test_schedulers_reject_bad_arguments(make, error, words):
    with pytest.raises(error) as info:
        make(our_optimizer())
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# --- make_scheduler ------------------------------------------------------------------------

def test_make_scheduler_builds_each_kind_with_defaults_from_the_epochs():
    o = our_optimizer()
    made = {name: optim.make_scheduler(name, o, epochs=12) for name in optim.SCHEDULERS}
    assert list(made) == ["constant", "step", "multistep", "plateau", "cosine", "warm-restarts"]
    assert all(type(s).kind == name for name, s in made.items())
    assert made["step"].step_size == 4 and made["step"].gamma == 0.1
    assert made["multistep"].milestones == [6, 9]
    assert made["plateau"].mode == "max" and made["plateau"].patience == 2
    assert made["cosine"].T_max == 12 and made["cosine"].eta_min == 0.0
    assert made["warm-restarts"].T_0 == 4 and made["warm-restarts"].T_mult == 1
    assert [name for name, s in made.items() if s.per_batch] == ["warm-restarts"]
    assert [name for name, s in made.items() if s.needs_metric] == ["plateau"]


def test_make_scheduler_defaults_stay_positive_for_short_runs():
    o = our_optimizer()
    assert optim.make_scheduler("step", o, 2).step_size == 1
    assert optim.make_scheduler("warm-restarts", o, 1).T_0 == 1
    assert optim.make_scheduler("multistep", o, 1).milestones == []
    assert optim.make_scheduler("multistep", o, 3).milestones == [1, 2]


def test_make_scheduler_options_override_the_defaults():
    o = our_optimizer()
    scheduler = optim.make_scheduler("warm-restarts", o, 30, T_0=5, T_mult=2)
    assert (scheduler.T_0, scheduler.T_mult) == (5, 2)
    assert optim.make_scheduler("step", o, 30, step_size=7, gamma=0.5).step_size == 7
    assert optim.make_scheduler("plateau", o, 30, mode="min").mode == "min"


def test_make_scheduler_ignores_options_of_other_schedulers_and_nones():
    # a training loop passes all its settings, None meaning "the default"
    settings = dict(step_size=None, patience=4, T_0=None, T_mult=2)
    o = our_optimizer()
    assert optim.make_scheduler("step", o, 30, **settings).step_size == 10
    assert optim.make_scheduler("plateau", o, 30, **settings).patience == 4
    restarts = optim.make_scheduler("warm-restarts", o, 30, **settings)
    assert (restarts.T_0, restarts.T_mult) == (10, 2)
    assert isinstance(optim.make_scheduler("constant", o, 30, **settings), optim.Constant)


@pytest.mark.parametrize("call, error, words", [
    (lambda o: optim.make_scheduler("linear", o, 10), ValueError,
     ["unknown scheduler 'linear'",
      "constant, step, multistep, plateau, cosine, warm-restarts"]),
    (lambda o: optim.make_scheduler(None, o, 10), ValueError, ["unknown scheduler None"]),
    (lambda o: optim.make_scheduler("cosine", o, 0), ValueError,
     ["epochs must be an integer >= 1"]),
    (lambda o: optim.make_scheduler("step", o, 10, setp_size=3), TypeError,
     ["no scheduler has the option setp_size", "the options are T_0, T_max, T_mult, cooldown"]),
])
def test_make_scheduler_errors(call, error, words):
    with pytest.raises(error) as info:
        call(our_optimizer())
    message = str(info.value)
    assert message.startswith("make_scheduler:")
    for word in words:
        assert word in message, (word, message)


# --- linear warm-up --------------------------------------------------------------------

def test_warmup_factor_rises_linearly_to_one_and_stays():
    assert [optim.warmup_factor(step, 4) for step in range(7)] == [0.25, 0.5, 0.75, 1, 1, 1, 1]
    assert [optim.warmup_factor(step, 0) for step in range(3)] == [1, 1, 1]
    assert optim.warmup_factor(0, 1) == 1


@pytest.mark.torch
@pytest.mark.parametrize("warmup_steps", [2, 5, 17])
def test_warmup_factor_matches_torch_linear_lr(warmup_steps):
    """(step + 1) / W is LinearLR stepped once per batch from 1/W to 1 over W - 1 steps."""
    torch = pytest.importorskip("torch")
    optimizer = torch_optimizer(torch)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps,
                                                  end_factor=1.0, total_iters=warmup_steps - 1)
    theirs = []
    for _ in range(warmup_steps + 3):
        theirs.append(optimizer.param_groups[0]["lr"] / BASE_LR)
        optimizer.step()
        scheduler.step()
    ours = [optim.warmup_factor(step, warmup_steps) for step in range(warmup_steps + 3)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("step, warmup_steps, words", [
    (-1, 4, "step must be an integer >= 0"),
    (1.5, 4, "step must be an integer"),
    (0, -2, "warmup_steps must be an integer >= 0"),
    (True, 4, "step must be an integer"),
])
def test_warmup_factor_rejects_bad_counts(step, warmup_steps, words):
    with pytest.raises((TypeError, ValueError), match="warmup_factor: " + words):
        optim.warmup_factor(step, warmup_steps)


# --- weight averaging ----------------------------------------------------------------------

def visit(params, step):
    """Move every parameter to fresh random values, as a training step would."""
    for index, p in enumerate(params):
        p.data[...] = randn(500 + 10 * step + index, p.shape).astype(p.data.dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_average_is_the_plain_mean_of_the_visited_values(dtype):
    params = [Parameter(randn(i, shape).astype(dtype)) for i, shape in enumerate(SHAPES)]
    average = optim.WeightAverage(params)
    visited = []
    for step in range(5):
        visit(params, step)
        visited.append([p.data.copy() for p in params])
        average.update()
    average.copy_to_parameters()
    tolerance = 1e-14 if dtype == np.float64 else 1e-6
    for index, p in enumerate(params):
        expected = np.mean([values[index] for values in visited], axis=0)
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, expected, rtol=tolerance, atol=tolerance)
    assert repr(average) == "WeightAverage(3 parameters, 5 updates)"


@pytest.mark.torch
def test_weight_average_matches_torch_averaged_model():
    """The same sequence of float32 values averaged by torch.optim.swa_utils.AveragedModel:
    the same arithmetic (mean + (value - mean) / k), so the same floats."""
    torch = pytest.importorskip("torch")
    params = [Parameter(randn(i, shape).astype(np.float32)) for i, shape in enumerate(SHAPES)]
    module = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params])
    theirs = torch.optim.swa_utils.AveragedModel(module)
    ours = optim.WeightAverage(params)
    for step in range(7):
        visit(params, step)
        with torch.no_grad():
            for p, q in zip(params, module):
                q.copy_(torch.from_numpy(p.data))
        ours.update()
        theirs.update_parameters(module)
    ours.copy_to_parameters()
    for p, q in zip(params, theirs.module):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_weight_average_resumes_from_its_state_dict_bit_for_bit():
    params = fresh_params()
    whole = optim.WeightAverage(params)
    for step in range(6):
        visit(params, step)
        whole.update()
    whole.copy_to_parameters()
    expected = [p.data.copy() for p in params]

    params = fresh_params()
    first = optim.WeightAverage(params)
    for step in range(3):
        visit(params, step)
        first.update()
    state = json.loads(json.dumps({k: v.tolist() for k, v in first.state_dict().items()}))
    resumed = optim.WeightAverage(params)
    resumed.load_state_dict({k: np.asarray(v) for k, v in state.items()})
    assert resumed.count == 3
    for step in range(3, 6):
        visit(params, step)
        resumed.update()
    resumed.copy_to_parameters()
    for p, value in zip(params, expected):
        np.testing.assert_array_equal(p.data, value)


def test_weight_average_state_before_any_update_holds_only_the_count():
    average = optim.WeightAverage(fresh_params())
    state = average.state_dict()
    assert list(state) == ["count"] and state["count"] == 0
    again = optim.WeightAverage(fresh_params())
    again.load_state_dict(state)
    assert again.count == 0
    with pytest.raises(ValueError, match="WeightAverage.copy_to_parameters: nothing has been "
                                         "averaged yet"):
        again.copy_to_parameters()


def averaged_state():
    average = optim.WeightAverage(fresh_params())
    average.update()
    return average.state_dict()


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("count"), "missing entry: count"),
    (lambda s: s.update(count=np.array(-1)), "count must be a single integer >= 0"),
    (lambda s: s.update(count=np.array(1.5)), "count must be a single integer >= 0"),
    (lambda s: s.update(count=np.array([1, 2])), "count must be a single integer >= 0"),
    (lambda s: s.update({"mean/p9": np.zeros(3)}), "entries for no parameter: mean/p9"),
    (lambda s: s.update({"mean/p0": np.zeros((4, 3))}),
     "mean/p0: expected shape (3, 4), got (4, 3)"),
    (lambda s: s.update({"mean/p1": np.zeros(4, np.int64)}),
     "mean/p1 must be floating point, got int64"),
    (lambda s: s.pop("mean/p2"), "missing entries: mean/p2"),
    (lambda s: s.update(count=np.array(0)), "count is 0, yet means are given"),
])
def test_weight_average_refuses_a_mismatched_state_and_changes_nothing(edit, words):
    state = averaged_state()
    edit(state)
    average = optim.WeightAverage(fresh_params(seed=7))
    with pytest.raises(ValueError) as info:
        average.load_state_dict(state)
    assert str(info.value).startswith("WeightAverage.load_state_dict: ")
    assert words in str(info.value)
    assert average.count == 0 and average.means == {}
    with pytest.raises(TypeError, match="WeightAverage.load_state_dict: expected a dict"):
        average.load_state_dict([1, 2])


def test_weight_average_takes_named_parameters_and_checks_them():
    model = Sequential(Linear(3, 2), ReLU(), Linear(2, 1))
    average = optim.WeightAverage(model.named_parameters())
    average.update()
    assert sorted(average.state_dict()) == ["count", "mean/0.bias", "mean/0.weight",
                                            "mean/2.bias", "mean/2.weight"]
    with pytest.raises(ValueError, match="WeightAverage: params is empty"):
        optim.WeightAverage([])
    with pytest.raises(TypeError, match="WeightAverage: params must be an iterable"):
        optim.WeightAverage(Parameter(np.zeros(2)))


@pytest.mark.gpu
def test_gpu_weight_average_lives_on_the_gpu_and_matches_the_cpu():
    cupy = tv.backend.cupy_module()
    cpu_params = fresh_params()
    gpu_params = [Parameter(cupy.asarray(p.data)) for p in cpu_params]
    cpu, gpu = optim.WeightAverage(cpu_params), optim.WeightAverage(gpu_params)
    for step in range(3):
        visit(cpu_params, step)
        for p, q in zip(cpu_params, gpu_params):
            q.data[...] = cupy.asarray(p.data)
        cpu.update()
        gpu.update()
    resumed = optim.WeightAverage(gpu_params)
    resumed.load_state_dict(gpu.state_dict())
    assert all(tv.backend.device_of(mean) == "cuda" for mean in resumed.means.values())
    cpu.copy_to_parameters()
    resumed.copy_to_parameters()
    for p, q in zip(cpu_params, gpu_params):
        np.testing.assert_allclose(q.data.get(), p.data, rtol=1e-15, atol=1e-15)
