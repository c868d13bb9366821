"""Dense evaluation (``tinyvgg.models.DenseVGG``) and ``tinyvgg experiment dense-eval``."""
import re

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import functional as F
from tinyvgg import nn
from tinyvgg.data import transforms
from tinyvgg.experiments import dense as dense_experiment
from tinyvgg.models import DenseVGG, multi_scale_scores, resize_images, vgg
from tinyvgg.models.imagenet import softmax


def make(head="imagenet", config="vgg11", seed=0, **options):
    options = {"width": 1 / 16, "num_classes": 10, "dtype": np.float64, **options}
    model = vgg(config, head=head, generator=np.random.default_rng(seed), **options)
    return model.eval()


def images(seed, shape):
    return tv.tensor(np.random.default_rng(seed).standard_normal(shape))


def plain(model, x):
    with tv.no_grad():
        return model(x).numpy()


@pytest.fixture(scope="module")
def imagenet():
    return make("imagenet")


@pytest.fixture(scope="module")
def compact():
    return make("compact", config="vgg16")


@pytest.mark.parametrize("head, size", [("imagenet", 224), ("compact", 32)])
def test_dense_equals_the_model_at_the_training_size(head, size, imagenet, compact):
    model = imagenet if head == "imagenet" else compact
    x = images(1, (2, 3, size, size))
    score_map = DenseVGG(model)(x).numpy()
    assert score_map.shape == (2, 10, 1, 1)
    np.testing.assert_allclose(score_map[:, :, 0, 0], plain(model, x), rtol=1e-12, atol=0)


def test_float32_dense_equals_the_model_to_rounding():
    model = make(dtype=np.float32, seed=4)
    x = tv.tensor(np.random.default_rng(2).standard_normal((1, 3, 224, 224)), dtype=np.float32)
    reference = plain(model, x)
    assert np.abs(DenseVGG(model)(x).numpy()[:, :, 0, 0] - reference).max() \
        <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("head, shape", [("imagenet", (1, 3, 256, 300)),
                                         ("compact", (2, 3, 64, 96))])
def test_each_map_position_is_the_classifier_on_its_feature_window(head, shape, imagenet,
                                                                      compact):
    model = imagenet if head == "imagenet" else compact
    window = 7 if head == "imagenet" else 1
    x = images(5, shape)
    score_map = DenseVGG(model)(x).numpy()
    with tv.no_grad():
        features = model.features(x).numpy()
    h, w = features.shape[2] - window + 1, features.shape[3] - window + 1
    assert score_map.shape == (shape[0], 10, h, w) and h * w > 1
    for i in range(h):
        for j in range(w):
            patch = tv.tensor(features[:, :, i:i + window, j:j + window])
            with tv.no_grad():
                expected = model.classifier(F.flatten(patch, 1)).numpy()
            np.testing.assert_allclose(score_map[:, :, i, j], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("height, width", [(224, 224), (255, 256), (288, 320), (300, 352)])
def test_map_shape_is_features_minus_six(height, width, imagenet):
    dense = DenseVGG(imagenet)
    expected = (height // 32 - 6, width // 32 - 6)
    assert dense.map_shape(height, width) == expected
    assert DenseVGG(imagenet)(images(0, (1, 3, height, width))).shape == (1, 10) + expected


def test_dense_evaluates_in_eval_mode_and_restores_the_modes():
    model = make(seed=7)
    x = images(3, (1, 3, 224, 224))
    reference = plain(model, x)
    model.train()
    dense = DenseVGG(model)
    first, second = dense(x).numpy(), dense(x).numpy()  # dropout would make these differ
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[:, :, 0, 0], reference, rtol=1e-12, atol=0)
    assert all(m.training for _, m in model.named_modules())
    assert list(dense.state_dict()) == [k for k in model.state_dict()]


def test_a_model_without_the_vgg_classifier_is_refused():
    class Headless(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv3x3(3, 4, dtype=np.float64), nn.ReLU())

    with pytest.raises(ValueError, match="DenseVGG: .*Headless has no avgpool, classifier"):
        DenseVGG(Headless())
    with pytest.raises(TypeError, match="DenseVGG: expected a VGG model"):
        DenseVGG("vgg16")
    model = make()
    model.classifier = nn.Sequential(nn.Linear(32 * 49, 10, dtype=np.float64), nn.Flatten())
    with pytest.raises(ValueError, match="DenseVGG: expected a classifier .* Linear, Flatten"):
        DenseVGG(model)
    model.classifier = nn.Sequential(nn.Linear(32, 10, dtype=np.float64))
    with pytest.raises(ValueError, match="must read the 32x7x7 = 1568 values.* reads 32"):
        DenseVGG(model)


def test_an_input_smaller_than_the_training_size_is_refused(imagenet, compact):
    with pytest.raises(ValueError, match="DenseVGG: input of 192x256 is smaller than the "
                                         "training size 224x224"):
        DenseVGG(imagenet)(images(0, (1, 3, 192, 256)))
    with pytest.raises(ValueError, match="training size 32x32"):
        DenseVGG(compact)(images(0, (1, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"DenseVGG: expected images of shape \(N, 3, H, W\)"):
        DenseVGG(imagenet)(images(0, (1, 1, 224, 224)))
    with pytest.raises(ValueError, match="DenseVGG: input of 160x160"):
        multi_scale_scores(imagenet, images(0, (1, 3, 224, 224)), [160])


def test_one_scale_without_flip_is_the_plain_softmax(imagenet):
    x = images(8, (2, 3, 224, 224))
    posterior = multi_scale_scores(imagenet, x, [224], flip=False)
    np.testing.assert_allclose(posterior, softmax(plain(imagenet, x)), rtol=1e-12, atol=0)


def test_flips_and_scales_are_averaged(imagenet):
    x = images(9, (1, 3, 224, 224))
    mirrored = tv.tensor(np.ascontiguousarray(x.numpy()[..., ::-1]))
    both = (softmax(plain(imagenet, x)) + softmax(plain(imagenet, mirrored))) / 2
    np.testing.assert_allclose(multi_scale_scores(imagenet, x, [224]), both, rtol=1e-12)
    per_scale = [multi_scale_scores(imagenet, x, [q]) for q in (224, 256)]
    averaged = multi_scale_scores(DenseVGG(imagenet), x, (224, 256))
    np.testing.assert_allclose(averaged, np.mean(per_scale, axis=0), rtol=1e-12)
    assert not np.allclose(per_scale[0], per_scale[1])
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0)


def test_resize_keeps_the_aspect_ratio_with_the_training_filter():
    batch = np.random.default_rng(0).random((2, 3, 20, 30))
    assert resize_images(batch, 20) is batch
    resized = resize_images(batch, 10)
    assert resized.shape == (2, 3, 10, 15)
    for n in range(2):
        expected = transforms.resize(batch[n].transpose(1, 2, 0), (10, 15)).transpose(2, 0, 1)
        np.testing.assert_allclose(resized[n], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="resize_images: size must be positive"):
        resize_images(batch, 0)


def test_the_experiment_prints_returns_and_draws(tmp_path):
    lines = []
    result = dense_experiment.run(tmp_path, seed=0, log=lines.append)
    assert result["agreement"]["float32"] <= 1e-6
    assert result["agreement"]["float64"] <= 1e-13
    assert result["map_shapes"] == {224: [1, 1], 256: [2, 2], 288: [3, 3], 320: [4, 4],
                                    384: [6, 6]}
    cost = result["cost"]
    assert cost["positions"] == 36
    # 36 crops redo the shared convolutions: (36 * 224^2) / 384^2 = 12.25x the conv work
    assert 9 < cost["crop_macs"] / cost["dense_macs"] < 12.25
    assert cost["crop_vs_dense_max_diff"] > 1e-3  # zero padding at the crop borders
    scores = result["multi_scale"]
    per_scale = [scores["per_scale"][q] for q in scores["scales"]]
    np.testing.assert_allclose(scores["posterior"], np.mean(per_scale, axis=0), rtol=1e-10)
    assert scores["winner"] == int(np.argmax(scores["posterior"]))
    text = "\n".join(lines)
    assert re.search(r"384x384 +12x12 +6x6 +1x10x6x6", text) and "36 crops" in text
    assert (tmp_path / "dense-eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["figures"] == [str(tmp_path / "dense-eval.png")]
