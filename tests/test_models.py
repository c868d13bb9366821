"""The VGG family: configurations, parameter counts, names, initialisation, options and errors."""
import re

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import nn
from tinyvgg.models import cfgs, vgg

#: torchvision's parameter counts (weights and biases)
TORCHVISION_PARAMS = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544,
                      "vgg19": 143_667_240, "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736,
                      "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248}
#: the paper's Table 2 lists C at 134M; A-LRN's LRN has no parameters
PAPER_ONLY_PARAMS = {"vgg11_lrn": 132_863_336, "vgg16c": 133_638_952}


def count(model):
    return sum(p.data.size for p in model.parameters())


def small(name, **options):
    return vgg(name, width=0.125, head="compact", num_classes=10, **options)


@pytest.mark.parametrize("name, expected", list({**TORCHVISION_PARAMS,
                                                 **PAPER_ONLY_PARAMS}.items()))
def test_parameter_counts(name, expected):
    assert count(vgg(name, init_weights=False)) == expected


@pytest.mark.parametrize("letter, weight_layers", [("A", 11), ("A-LRN", 11), ("B", 13),
                                                   ("C", 16), ("D", 16), ("E", 19)])
def test_each_configuration_has_the_paper_depth(letter, weight_layers):
    model = small(letter)
    convs = [m for m in model.features if isinstance(m, (nn.Conv3x3, nn.Conv1x1))]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert len(convs) + len(fcs) == weight_layers
    assert sum(isinstance(m, nn.MaxPool2x2) for m in model.features) == 5
    assert sum(isinstance(m, nn.Conv1x1) for m in model.features) == (3 if letter == "C" else 0)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.features) == \
        (1 if letter == "A-LRN" else 0)


def test_vgg16_layer_order_names_and_shapes_are_torchvision_s():
    model = vgg("vgg16", init_weights=False)
    state = model.state_dict()
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    expected = {}
    c_in = 3
    for index, c_out in zip(conv_indices, widths):
        expected[f"features.{index}.weight"] = (c_out, c_in, 3, 3)
        expected[f"features.{index}.bias"] = (c_out,)
        c_in = c_out
    for index, (n_out, n_in) in zip([0, 3, 6], [(4096, 25088), (4096, 4096), (1000, 4096)]):
        expected[f"classifier.{index}.weight"] = (n_out, n_in)
        expected[f"classifier.{index}.bias"] = (n_out,)
    assert {k: v.shape for k, v in state.items()} == expected
    assert list(state) == sorted(expected, key=lambda k: (not k.startswith("features"),
                                                          int(k.split(".")[1]), k[-4:] == "bias"))
    assert model.avgpool.output_size == (7, 7)
    assert [type(m).__name__ for m in model.classifier] == \
        ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert type(model.features[30]).__name__ == "MaxPool2x2" and len(model.features) == 31


def test_batch_norm_variant_names_follow_torchvision():
    keys = list(vgg("vgg11_bn", init_weights=False).state_dict())
    assert keys[:7] == ["features.0.weight", "features.0.bias", "features.1.weight",
                        "features.1.bias", "features.1.running_mean", "features.1.running_var",
                        "features.1.num_batches_tracked"]
    assert keys[-1] == "classifier.6.bias"
    assert "features.26.running_var" in keys  # 8 convs x (conv, bn, relu) + 5 pools = 29 layers


def test_configuration_names_and_letters_agree():
    for name, letter in [("vgg11", "A"), ("vgg11_lrn", "A-LRN"), ("vgg13", "B"),
                         ("vgg16c", "C"), ("vgg16", "D"), ("vgg19", "E")]:
        by_name, by_letter = small(name), small(letter)
        assert by_name.config == by_letter.config == letter
        assert list(by_name.state_dict()) == list(by_letter.state_dict())
        assert getattr(tv.models, name)(width=0.125, head="compact").config == letter
    assert small("vgg16_bn").batch_norm and small("D", batch_norm=True).batch_norm
    assert vgg("a-lrn", width=0.125, head="compact").config == "A-LRN"


def test_cfgs_are_plain_data():
    assert cfgs["D"].count("M") == 5 and all(isinstance(v, (int, str, tuple))
                                             for cfg in cfgs.values() for v in cfg)


def test_initialisation_is_torchvision_s():
    tv.manual_seed(0)
    model = vgg("vgg16", width=0.5, num_classes=100)
    conv = model.features[10]  # 128 -> 128 at width 0.5, fan_out = 128 * 9
    assert np.std(conv.weight.data) == pytest.approx(np.sqrt(2 / (128 * 9)), rel=0.02)
    assert np.std(model.classifier[0].weight.data) == pytest.approx(0.01, rel=0.02)
    assert abs(np.mean(model.classifier[0].weight.data)) < 1e-4
    assert all(not p.data.any() for name, p in model.named_parameters() if name.endswith("bias"))
    bn = vgg("vgg11_bn", width=0.125, head="compact").features[1]
    assert (bn.weight.data == 1).all() and not bn.bias.data.any()


def test_initialisation_is_reproducible_with_a_seed():
    tv.manual_seed(3)
    a = small("vgg11").state_dict()
    tv.manual_seed(3)
    b = small("vgg11").state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_width_scales_every_layer_and_compact_head_fits_small_inputs():
    model = vgg("vgg16", width=0.25, head="compact", num_classes=10, in_channels=1)
    assert [m.out_channels for m in model.features if isinstance(m, nn.Conv3x3)] == \
        [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert model.features[0].in_channels == 1
    assert model.avgpool.output_size == (1, 1)
    assert [(m.in_features, m.out_features) for m in model.classifier
            if isinstance(m, nn.Linear)] == [(128, 128), (128, 128), (128, 10)]
    assert count(model) == 955_098 - 288  # one input channel instead of three: 2 * 9 * 16 fewer
    x = tv.tensor(np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32))
    assert model(x).shape == (2, 10)


def test_dropout_option_reaches_both_dropout_layers():
    model = small("vgg11", dropout=0.3)
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.3, 0.3]


@pytest.mark.parametrize("name", ["vgg11", "vgg11_lrn", "vgg16c", "vgg13_bn"])
def test_every_configuration_trains_a_step(name):
    tv.manual_seed(1)
    model = small(name)
    x = tv.tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    loss = tv.functional.cross_entropy(model(x), np.array([1, 7]))
    loss.backward()
    assert np.isfinite(loss.item())
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


def test_odd_input_sizes_floor_through_the_pools():
    model = small("vgg11")
    x = tv.tensor(np.zeros((1, 3, 45, 37), np.float32))
    assert model(x).shape == (1, 10)


# --- bad input ---------------------------------------------------------------------------
def raises(exception, *fragments):
    return pytest.raises(exception, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


def test_too_small_input_names_the_pool_and_the_size_it_got():
    model = small("vgg16")
    with raises(ValueError, "vgg16", "16x16 is too small", "features.30 (MaxPool2x2)",
                "would get 1x1", "5 max-pools need at least 32x32"):
        model(tv.tensor(np.zeros((1, 3, 16, 16), np.float32)))
    with raises(ValueError, "17x40", "features.30", "1x2"):
        model(tv.tensor(np.zeros((1, 3, 17, 40), np.float32)))


def test_wrong_channel_count_names_the_first_conv():
    model = small("vgg11")
    with raises(ValueError, "Conv3x3(3, 8) at features.0", "input has 1 channels",
                "expects 3"):
        model(tv.tensor(np.zeros((1, 1, 32, 32), np.float32)))


def test_error_deep_inside_names_the_full_dotted_path():
    model = small("vgg11")
    model.classifier[3] = nn.Linear(5, 5)
    with raises(ValueError, "Linear(in_features=5, out_features=5) at classifier.3: linear"):
        model(tv.tensor(np.zeros((1, 3, 32, 32), np.float32)))


def test_weights_of_another_config_list_missing_unexpected_and_misshaped_keys():
    with pytest.raises(ValueError) as caught:
        small("vgg13").load_state_dict(small("vgg11").state_dict())
    message = str(caught.value)
    assert re.search(r"missing keys: features\.2\.weight, features\.2\.bias, .*features\.22\.bias",
                     message)
    assert re.search(r"unexpected keys: features\.3\.weight, .*features\.18\.bias", message)
    with pytest.raises(ValueError) as caught:
        small("vgg16c").load_state_dict(small("vgg16").state_dict())
    message = str(caught.value)
    assert "missing" not in message and "unexpected" not in message
    assert message.endswith("wrong shapes: features.14.weight: expected (32, 32, 1, 1), got "
                            "(32, 32, 3, 3); features.21.weight: expected (64, 64, 1, 1), got "
                            "(64, 64, 3, 3); features.28.weight: expected (64, 64, 1, 1), got "
                            "(64, 64, 3, 3)")
    with pytest.raises(ValueError, match="unexpected keys: .*features.1.running_mean"):
        small("vgg11").load_state_dict(small("vgg11_bn").state_dict())


@pytest.mark.parametrize("options, fragment", [
    ({"config": "F"}, "unknown configuration 'F'"),
    ({"config": "D", "head": "tiny"}, "head must be one of"),
    ({"config": "D", "width": 0}, "width must be positive"),
    ({"config": "D", "num_classes": 0}, "must be positive"),
])
def test_constructor_rejects_bad_options(options, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        vgg(**options)
