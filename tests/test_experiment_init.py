"""``tinyvgg experiment init`` / ``init-vgg``: the numbers that teach the lesson, at seed 0.

Tolerances come from the spread of the numbers over seeds: one draw of 500-wide
weights moves a layer's variance by a few percent, so the lecture's bands hold
for early layers always and for later layers only for some draws (seed 0 is
one). The gradients the experiment reports are recomputed by an independent
NumPy backward pass and checked against finite differences."""
import json
import math

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import functional as F
from tinyvgg import nn
from tinyvgg.experiments import init as experiment

SMALL_GAIN = math.sqrt(500) * 0.01  # tanh near 0 is the identity: the std's factor a layer
RELU_MEAN, RELU_STD = 1 / math.sqrt(2 * math.pi), math.sqrt(0.5 - 1 / (2 * math.pi))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    out = tmp_path_factory.mktemp("init")
    lines = []
    result = experiment.run_mlp(out, seed=0, log=lines.append)
    return result, lines, out


@pytest.fixture(scope="module")
def vgg_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("init-vgg")
    lines = []
    result = experiment.run_vgg(out, seed=0, log=lines.append)
    return result, lines, out


def case(mlp, key):
    return mlp[0]["cases"][key]


def numpy_backward(inputs, weights, nonlinearity, upstream):
    """The same net written out in NumPy: activations, dL/da_i and dL/dW_i."""
    activations, a = [], inputs
    for w in weights:
        h = a @ w.T
        a = np.tanh(h) if nonlinearity == "tanh" else np.maximum(h, 0)
        activations.append(a)
    g, activation_grads, weight_grads = upstream, [], []
    for i in reversed(range(len(weights))):
        activation_grads.insert(0, g)
        a = activations[i]
        dh = g * (1 - a * a) if nonlinearity == "tanh" else g * (a > 0)
        below = inputs if i == 0 else activations[i - 1]
        weight_grads.insert(0, dh.T @ below)
        g = dh @ weights[i]
    return activations, activation_grads, weight_grads


# --- init: the fully connected net -------------------------------------------------------

def test_small_weights_collapse_tanh_activations_by_0_224_a_layer(mlp):
    stats = case(mlp, "tanh-0.01")
    std, mean = np.array(stats["std"]), np.array(stats["mean"])
    for layer, lecture in zip(range(3), (0.21, 0.048, 0.011)):  # the lecture's first three
        assert std[layer] == pytest.approx(lecture, rel=0.1)
    assert std[9] < 1e-5
    np.testing.assert_allclose(std[1:] / std[:-1], SMALL_GAIN, rtol=0.025)
    assert np.all(np.abs(mean) < 0.01 * std)


def test_xavier_tanh_shrinks_slowly_as_the_mean_field_recursion_predicts(mlp):
    """With Var(w) = 1/fan_in, Var(h_l) = E[a_(l-1)^2] and E[a_l^2] = E[tanh(h_l)^2]:
    iterating that expectation (Gauss-Hermite) predicts every layer's std. Over 40
    seeds the layer-10 std stays within 2.5% of the prediction (0.2285), near
    1/sqrt(2 * 10) = 0.224, the small-variance limit v_l ~ 1/(2 l)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    second_moment, predicted = 1.0, []
    for _ in range(10):
        second_moment = float((weights * np.tanh(np.sqrt(second_moment) * nodes) ** 2).sum())
        predicted.append(math.sqrt(second_moment))
    std = np.array(case(mlp, "tanh-xavier")["std"])
    np.testing.assert_allclose(std, predicted, rtol=0.03)
    assert 0.2 < std[9] < 0.26
    assert np.all(np.diff(std) < 0)  # shrinking, but 0.63 -> 0.23, not 0.21 -> 3e-7


def test_he_keeps_relu_outputs_at_the_rectified_gaussian_of_variance_2(mlp):
    stats = case(mlp, "relu-he")
    mean, std = np.array(stats["mean"]), np.array(stats["std"])
    # every pre-activation is N(0, 2) on average over draws: mean 0.564, std 0.826
    assert mean[0] == pytest.approx(math.sqrt(2) * RELU_MEAN, rel=0.03)
    assert std[0] == pytest.approx(math.sqrt(2) * RELU_STD, rel=0.03)
    # the lecture's band (0.55-0.62 and 0.81-0.89 in its run), for this seed's draw
    assert np.all((mean >= 0.5) & (mean <= 0.65)), mean
    assert np.all((std >= 0.75) & (std <= 0.95)), std
    # the shape of a rectified Gaussian: mean / std = 0.683 (0.61-0.73 over 40 seeds)
    assert np.all(np.abs(mean / std - RELU_MEAN / RELU_STD) < 0.06)


def test_the_slides_he_typo_multiplies_the_std_by_about_250_a_layer(mlp):
    std = np.array(case(mlp, "relu-he-typo")["std"])
    ratios = std[1:] / std[:-1]
    assert np.all(ratios > 100)
    np.testing.assert_allclose(ratios, math.sqrt(500 * 250 / 2), rtol=0.1)
    assert np.all(np.isfinite(std)) and std[9] > 1e22  # finite only in float64


def test_gradients_vanish_going_down_with_small_weights_and_explode_with_the_typo(mlp):
    small, typo, he = (case(mlp, k) for k in ("tanh-0.01", "relu-he-typo", "relu-he"))
    for stats in (small, typo, he):
        assert stats["grad_std"][9] == pytest.approx(1.0, rel=0.01)  # the upstream G itself
    g = np.array(small["grad_std"])
    np.testing.assert_allclose(g[:-1] / g[1:], SMALL_GAIN, rtol=0.03)  # shrinks going down
    assert g[0] < 1e-5
    assert np.all(np.array(typo["grad_std"][:-1]) / np.array(typo["grad_std"][1:]) > 100)
    # dL/dW_i = (dL/dh_i)^T a_(i-1): a gradient shrunk from the top times an activation
    # shrunk from the bottom, the same tiny size at every layer
    small_w, he_w = np.array(small["weight_grad_std"]), np.array(he["weight_grad_std"])
    assert small_w.max() < 1e-4 and small_w.max() / small_w.min() < 1.2
    assert np.all(small_w < 1e-5 * he_w)
    assert np.all(np.array(typo["weight_grad_std"]) > 1e20)


@pytest.mark.parametrize("key", ["tanh-0.01", "relu-he-typo"])
def test_the_reported_statistics_equal_an_independent_numpy_pass(mlp, key):
    inputs, unit_weights, upstream = experiment.draw_mlp(0)
    stats = case(mlp, key)
    weights = [stats["weight_std"] * w for w in unit_weights]
    activations, activation_grads, weight_grads = numpy_backward(
        inputs, weights, stats["nonlinearity"], upstream)
    np.testing.assert_allclose(stats["std"], [a.std() for a in activations], rtol=1e-9)
    np.testing.assert_allclose(stats["grad_std"], [g.std() for g in activation_grads],
                               rtol=1e-9)
    np.testing.assert_allclose(stats["weight_grad_std"], [g.std() for g in weight_grads],
                               rtol=1e-9)


def central_differences(f, x, eps=1e-6):
    """df/dx of a scalar function of the array x, one element at a time."""
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        grad[index] = (f(plus) - f(minus)) / (2 * eps)
    return grad


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_mlp_pass_gradients_equal_finite_differences(nonlinearity):
    inputs, unit_weights, upstream = experiment.draw_mlp(3, samples=6, width=5, depth=3)
    weights = [0.8 * w for w in unit_weights]
    result = experiment.mlp_pass(inputs, weights, nonlinearity, upstream)

    def loss(a, layers):
        """L = sum(a_last * upstream) from ``a`` through the weight matrices ``layers``."""
        for w in layers:
            h = a @ w.T
            a = np.tanh(h) if nonlinearity == "tanh" else np.maximum(h, 0)
        return float((a * upstream).sum())

    dw2 = central_differences(lambda w: loss(inputs, [weights[0], w, weights[2]]), weights[1])
    np.testing.assert_allclose(result["weight_grads"][1], dw2, rtol=1e-6, atol=1e-8)
    da1 = central_differences(lambda a: loss(a, weights[1:]), result["activations"][0])
    np.testing.assert_allclose(result["activation_grads"][0], da1, rtol=1e-6, atol=1e-8)


def test_mlp_table_figure_and_json(mlp):
    result, lines, out = mlp
    assert result["figures"] == [str(out / "init.png")]
    assert (out / "init.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(result["cases"]) == ["tanh-0.01", "tanh-xavier", "relu-he", "relu-he-typo"]
    for stats in result["cases"].values():
        assert all(len(stats[k]) == 10 for k in ("mean", "std", "grad_std", "weight_grad_std"))
        assert any(line.startswith(stats["label"]) for line in lines)
    assert any(line.split()[:3] == ["10", "2.99e-11", "2.98e-07"] for line in lines)
    assert any("float64" in line for line in lines)
    json.dumps(result)


def test_mlp_rejects_bad_arguments(tmp_path):
    inputs, weights, upstream = experiment.draw_mlp(0, samples=4, width=3, depth=2)
    with pytest.raises(ValueError, match="mlp_pass: nonlinearity must be one of tanh, relu, "
                                         "got 'sigmoid'"):
        experiment.mlp_pass(inputs, weights, "sigmoid", upstream)
    with pytest.raises(ValueError, match=r"mlp_pass: upstream must have the output's shape "
                                         r"\(4, 3\), got \(3, 4\)"):
        experiment.mlp_pass(inputs, weights, "tanh", upstream.T)
    with pytest.raises(ValueError, match="experiment init: out must be an existing folder"):
        experiment.run_mlp(tmp_path / "missing")
    with pytest.raises(ValueError, match="experiment init: seed must be an integer"):
        experiment.run_mlp(tmp_path, seed=-1)


def test_the_tanh_layer_applies_the_tanh_op():
    x = tv.tensor(np.linspace(-4, 4, 9), requires_grad=True, dtype=np.float64)
    y = nn.Tanh()(x)
    np.testing.assert_allclose(y.numpy(), np.tanh(np.linspace(-4, 4, 9)), rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1 - np.tanh(np.linspace(-4, 4, 9)) ** 2, rtol=1e-12)
    assert F.tanh(x).creator.function.name == "tanh"


# --- init-vgg: VGG-11 -------------------------------------------------------------------------

def variant(vgg_run, key):
    return vgg_run[0]["variants"][key]


def test_small_conv_weights_collapse_vgg_activations_and_their_gradients(vgg_run):
    he, small = variant(vgg_run, "he"), variant(vgg_run, "small")
    small_act = np.array(small["act_std"])
    assert len(small_act) == 8  # VGG-11's eight convolutions
    assert small_act[-1] < 1e-3 * he["act_std"][-1]  # measured 1.5e-5
    assert np.all(small_act[1:] / small_act[:-1] < 0.5)  # down at every layer
    # every weight gradient ~1e4 times smaller than with He's initialisation
    assert np.all(np.array(small["weight_grad_std"]) < 1e-3 * np.array(he["weight_grad_std"]))
    assert small["loss"] == pytest.approx(math.log(10), abs=1e-4)  # logits ~0: chance


def test_batch_norm_restores_unit_scale_whatever_the_weights_scale(vgg_run):
    bn = variant(vgg_run, "small-bn")
    # BN divides by sqrt(var + 1e-5): conv1's output variance is only 27 * 1e-4, hence 0.998
    np.testing.assert_allclose(bn["bn_std"], 1.0, atol=0.005)
    # ReLU of a unit Gaussian has std 0.584 (0.576 to 0.586 over seeds and layers)
    np.testing.assert_allclose(bn["act_std"], RELU_STD, atol=0.02)
    assert variant(vgg_run, "he")["bn_std"] == [] and variant(vgg_run, "small")["bn_std"] == []


def test_the_default_he_initialisation_stays_in_range(vgg_run):
    """fan_out He moves the forward variance by C_in/C_out at each conv without
    compounding: 0.10 to 0.34 over 4 seeds; nothing near 1e-5 or 1e5."""
    act = np.array(variant(vgg_run, "he")["act_std"])
    assert np.all((act > 0.08) & (act < 0.5)), act
    grads = np.array(variant(vgg_run, "he")["weight_grad_std"])
    assert np.all((grads > 1e-4) & (grads < 1e-1)), grads


def test_vgg_table_figure_and_json(vgg_run):
    result, lines, out = vgg_run
    assert result["figures"] == [str(out / "init-vgg.png")]
    assert (out / "init-vgg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert variant(vgg_run, "he")["layers"][:2] == ["features.0", "features.3"]
    rows = [line for line in lines if line.split()[:1] and line.split()[0].isdigit()]
    assert len(rows) == 8 and rows[-1].split()[1:3] == ["features.18", "256"]
    assert any(line.startswith("loss: (a)") and "(b) 2.3026" in line for line in lines)
    json.dumps(result)
