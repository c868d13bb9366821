"""Modules: registration and naming, state_dict, modes, dtype casting, batch norm state, init."""
import math

import numpy as np
import pytest

import tinyvgg as tv
from helpers import randn
from tinyvgg import functional as F
from tinyvgg import nn
from tinyvgg.tensor import topological_order


def small_model(dtype=np.float32):
    return nn.Sequential(nn.Conv3x3(3, 4, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
                         nn.MaxPool2x2(), nn.Conv1x1(4, 2, bias=False, dtype=dtype), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(8, 3, dtype=dtype))


def images(dtype=np.float32, seed=0):
    return tv.tensor(randn(seed, (2, 3, 4, 4), dtype))


class Block(nn.Module):
    """A custom module: a parameter of its own, a child layer and a nested Sequential."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(1))
        self.conv = nn.Conv3x3(2, 2, dtype=np.float64)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(2, 1, dtype=np.float64))

    def forward(self, x):
        return self.head(F.flatten(F.adaptive_avg_pool2d(self.conv(x), 1)) * self.scale)


def test_named_parameters_follow_registration_order_with_dotted_names():
    names = [name for name, _ in small_model().named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "7.weight", "7.bias"]
    assert [name for name, _ in Block().named_parameters()] == [
        "scale", "conv.weight", "conv.bias", "head.1.weight", "head.1.bias"]


def test_parameters_are_the_named_parameters_objects():
    model = small_model()
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters())
    assert model.parameters()[0] is model[0].weight


def test_a_shared_layer_is_listed_once():
    """As in PyTorch: a loop over parameters() must not update tied weights twice."""
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(model.parameters()) == 2


def test_reassigning_an_attribute_replaces_its_registration():
    block = Block()
    block.conv = nn.Conv1x1(2, 2, dtype=np.float64)
    assert dict(block.named_parameters())["conv.weight"].shape == (2, 2, 1, 1)
    block.scale = None
    assert "scale" not in dict(block.named_parameters())


def test_sequential_indexing_len_and_iteration():
    layers = [nn.Conv3x3(3, 4), nn.ReLU(), nn.MaxPool2x2()]
    model = nn.Sequential(*layers)
    assert len(model) == 3
    assert list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[2]
    tail = model[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == layers[1:]
    assert [name for name, _ in model.named_modules()] == ["", "0", "1", "2"]
    with pytest.raises(TypeError, match="item 1"):
        nn.Sequential(nn.ReLU(), F.relu)


def test_state_dict_round_trip_gives_identical_outputs():
    tv.manual_seed(0)
    model = small_model()
    model(images())  # a training step moves the running statistics off their initial values
    model.eval()
    tv.manual_seed(1)
    other = small_model().eval()
    x = images(seed=1)
    assert not np.array_equal(model(x).numpy(), other(x).numpy())
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(model(x).numpy(), other(x).numpy())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


def test_state_dict_returns_copies():
    model = small_model()
    state = model.state_dict()
    state["0.weight"][...] = 0.0
    state["1.running_mean"][...] = 5.0
    assert not np.all(model[0].weight.numpy() == 0.0)
    np.testing.assert_array_equal(model[1].running_mean, np.zeros(4))


def test_state_dict_contains_buffers_with_their_dtypes():
    state = small_model().state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                           "1.running_var", "1.num_batches_tracked", "4.weight", "7.weight",
                           "7.bias"]
    assert state["1.num_batches_tracked"].dtype == np.int64
    assert state["1.num_batches_tracked"].shape == ()


def test_load_state_dict_lists_every_problem_and_loads_nothing():
    model = small_model()
    before = model.state_dict()
    bad = small_model().state_dict()
    del bad["1.running_var"]
    bad["extra.weight"] = np.zeros(3)
    bad["7.weight"] = np.zeros((3, 9), dtype=np.float32)
    with pytest.raises(ValueError) as caught:
        model.load_state_dict(bad)
    message = str(caught.value)
    assert "missing keys: 1.running_var" in message
    assert "unexpected keys: extra.weight" in message
    assert "7.weight: expected (3, 8), got (3, 9)" in message
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_non_strict_ignores_missing_and_unexpected_but_not_shapes():
    model, source = small_model(), small_model()
    partial = {"0.weight": source.state_dict()["0.weight"], "not.a.key": np.zeros(2)}
    model.load_state_dict(partial, strict=False)
    np.testing.assert_array_equal(model[0].weight.numpy(), source[0].weight.numpy())
    assert not np.array_equal(model[0].bias.numpy(), source[0].bias.numpy())
    with pytest.raises(ValueError, match=r"0\.bias: expected \(4,\), got \(5,\)"):
        model.load_state_dict({"0.bias": np.zeros(5)}, strict=False)


def test_load_state_dict_writes_into_the_existing_arrays():
    model = small_model()
    weight = model[0].weight
    model.load_state_dict(small_model().state_dict())
    assert model[0].weight is weight


def test_train_and_eval_recurse_into_children():
    block = Block()
    assert all(m.training for _, m in block.named_modules())
    assert block.eval() is block
    assert not any(m.training for _, m in block.named_modules())
    block.train()
    assert all(m.training for _, m in block.named_modules())


def test_zero_grad_clears_every_parameter_gradient():
    model = small_model().to(np.float64)
    F.cross_entropy(model(images(np.float64)), np.array([0, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_float64_casts_parameters_and_float_buffers_only():
    model = small_model(np.float32)
    assert model.to(np.float64) is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[1].running_mean.dtype == np.float64
    assert model[1].running_var.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64
    state = model.state_dict()
    assert state["1.running_var"].dtype == np.float64
    assert model(images(np.float64)).dtype == np.float64


def test_batch_norm_counts_batches_only_in_training():
    bn = nn.BatchNorm2d(3)
    x = images()
    bn(x)
    bn(x)
    assert int(bn.num_batches_tracked) == 2
    mean = bn.running_mean.copy()
    bn.eval()
    bn(x)
    assert int(bn.num_batches_tracked) == 2
    np.testing.assert_array_equal(bn.running_mean, mean)
    assert int(bn.state_dict()["num_batches_tracked"]) == 2


def test_module_repr_names_layers():
    text = repr(nn.Sequential(nn.Conv3x3(3, 8), nn.Linear(4, 2, bias=False)))
    assert "(0): Conv3x3(3, 8)" in text
    assert "(1): Linear(in_features=4, out_features=2, bias=False)" in text


# --- init ---------------------------------------------------------------------------------

def big_weight(shape=(256, 128, 3, 3)):
    return nn.Parameter(np.zeros(shape))


def generator():
    return np.random.default_rng(123)


def assert_std(values, expected, rel=0.02):
    assert abs(values.std() / expected - 1) < rel, (values.std(), expected)
    assert abs(values.mean()) < 5 * expected / math.sqrt(values.size)


def test_normal_init_has_std_0_01():
    w = nn.init.normal_(big_weight(), generator=generator()).numpy()
    assert_std(w, 0.01)


def test_xavier_uniform_bound_and_std():
    w = big_weight()
    fan_in, fan_out = 128 * 9, 256 * 9
    bound = math.sqrt(6 / (fan_in + fan_out))
    values = nn.init.xavier_uniform_(w, generator=generator()).numpy()
    assert values.min() >= -bound and values.max() <= bound
    assert values.max() > 0.99 * bound and values.min() < -0.99 * bound
    assert_std(values, bound / math.sqrt(3))


def test_xavier_normal_std():
    values = nn.init.xavier_normal_(big_weight((300, 200)), generator=generator()).numpy()
    assert_std(values, math.sqrt(2 / (300 + 200)))


@pytest.mark.parametrize("mode, fan", [("fan_in", 128 * 9), ("fan_out", 256 * 9)])
def test_kaiming_normal_std_uses_the_chosen_fan(mode, fan):
    values = nn.init.kaiming_normal_(big_weight(), mode=mode, generator=generator()).numpy()
    assert_std(values, math.sqrt(2 / fan))


@pytest.mark.parametrize("make, fan_in", [(lambda: nn.Conv3x3(64, 128), 64 * 9),
                                          (lambda: nn.Conv1x1(300, 200), 300),
                                          (lambda: nn.Linear(500, 400), 500)],
                         ids=["Conv3x3", "Conv1x1", "Linear"])
def test_default_init_is_uniform_within_one_over_sqrt_fan_in(make, fan_in):
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    w = layer.weight.numpy()
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert_std(w, bound / math.sqrt(3), rel=0.03)
    b = layer.bias.numpy()
    assert np.abs(b).max() <= bound and b.std() > 0.3 * bound


def test_manual_seed_makes_initialisation_reproducible():
    tv.manual_seed(5)
    a = nn.Conv3x3(3, 4).weight.numpy().copy()
    tv.manual_seed(5)
    np.testing.assert_array_equal(nn.Conv3x3(3, 4).weight.numpy(), a)


def test_forward_hooks_see_each_call_can_replace_the_output_and_come_off():
    layer = nn.ReLU()
    calls = []
    handle = layer.register_forward_hook(lambda m, inputs, out: calls.append((m, inputs, out)))
    x = tv.tensor(np.array([-1.0, 2.0]))
    y = layer(x)
    assert calls == [(layer, (x,), y)]
    with layer.register_forward_hook(lambda m, inputs, out: out * 2):
        np.testing.assert_array_equal(layer(x).numpy(), [0.0, 4.0])
    np.testing.assert_array_equal(layer(x).numpy(), [0.0, 2.0])
    handle.remove()
    layer(x)
    assert len(calls) == 3 and not layer._forward_hooks


def test_sequential_item_assignment_keeps_the_name():
    model = nn.Sequential(nn.ReLU(), nn.Linear(2, 3))
    model[1] = nn.Linear(2, 4)
    assert [k for k, _ in model.named_parameters()] == ["1.weight", "1.bias"]
    with pytest.raises(TypeError, match="Sequential: item 0 must be a Module"):
        model[0] = "relu"


# --- a Conv3x3 and the ReLU after it run as one op ---------------------------------------

def _ops_behind(y):
    return [t.creator.function.name for t in topological_order(y) if t.creator is not None]


def _conv_relu_net():
    tv.manual_seed(3)
    return nn.Sequential(nn.Conv3x3(3, 4), nn.ReLU(), nn.Conv3x3(4, 2), nn.ReLU(),
                         nn.MaxPool2x2(), nn.Conv3x3(2, 2))


def _values_and_gradients(net, x):
    for p in net.parameters():
        p.grad = None
    y = net(x)
    y.backward(tv.tensor(np.random.default_rng(4).standard_normal(y.shape).astype(y.dtype)))
    return [y.numpy()] + [tv.backend.to_numpy(p.grad) for p in net.parameters()]


def test_sequential_runs_a_conv3x3_and_its_relu_as_one_op_with_the_same_results():
    net = _conv_relu_net()
    x = tv.tensor(np.random.default_rng(5).standard_normal((2, 3, 6, 7)).astype(np.float32))
    with nn.using_conv_relu("fused"):
        fused = _values_and_gradients(net, x)
        assert _ops_behind(net(x)) == ["conv3x3_relu", "conv3x3_relu", "maxpool2x2", "conv3x3"]
    with nn.using_conv_relu("separate"):
        separate = _values_and_gradients(net, x)
        assert _ops_behind(net(x)).count("relu") == 2
    assert 0 < (fused[0] > 0).mean() < 1
    for a, b in zip(fused, separate):
        np.testing.assert_array_equal(a, b)   # the same sums in the same order


def test_a_forward_hook_on_either_layer_keeps_them_apart():
    net = _conv_relu_net()
    x = tv.tensor(np.random.default_rng(6).standard_normal((1, 3, 4, 4)).astype(np.float32))
    seen = []
    handle = net[1].register_forward_hook(lambda module, inputs, output: seen.append(output))
    ops = _ops_behind(net(x))
    handle.remove()
    assert len(seen) == 1 and ops[:2] == ["conv3x3", "relu"] and ops[2] == "conv3x3_relu"
