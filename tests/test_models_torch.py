"""Whole VGGs against PyTorch: the same weights give the same logits and parameter gradients,
and weights move both ways through .pth files.

torchvision is not needed: ``torch_vgg`` builds the network exactly as torchvision's
``models/vgg.py`` does (features / avgpool / classifier, the same Sequential indices)."""
import copy

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import nn
from tinyvgg.models import cfgs, preprocess, top_k, vgg

torch = pytest.importorskip("torch")
tnn = torch.nn

pytestmark = pytest.mark.torch

#: relative error (in norm) allowed between the two frameworks
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


class TorchVGG(tnn.Module):
    def __init__(self, features, pool_size, classifier):
        super().__init__()
        self.features = features
        self.avgpool = tnn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = classifier

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def torch_vgg(letter, batch_norm=False, num_classes=1000, dropout=0.5, width=1.0,
              head="imagenet", dtype=torch.float32):
    layers, channels = [], 3
    for item in cfgs[letter]:
        if item == "M":
            layers.append(tnn.MaxPool2d(kernel_size=2, stride=2))
        elif item == "LRN":
            layers.append(tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0))
        else:
            kernel = 1 if isinstance(item, tuple) else 3
            out = max(1, round((item[1] if kernel == 1 else item) * width))
            layers.append(tnn.Conv2d(channels, out, kernel_size=kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(tnn.BatchNorm2d(out))
            layers.append(tnn.ReLU(inplace=True))
            channels = out
    pool = 7 if head == "imagenet" else 1
    hidden = max(1, round(4096 * width)) if head == "imagenet" else channels
    classifier = tnn.Sequential(
        tnn.Linear(channels * pool * pool, hidden), tnn.ReLU(True), tnn.Dropout(p=dropout),
        tnn.Linear(hidden, hidden), tnn.ReLU(True), tnn.Dropout(p=dropout),
        tnn.Linear(hidden, num_classes))
    return TorchVGG(tnn.Sequential(*layers), pool, classifier).to(dtype)


def relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-300)


def assert_gradients_match(ours, theirs, tolerance, dtype):
    """Per-parameter relative error below ``tolerance``; a gradient that is zero in exact
    arithmetic (a conv bias followed by batch norm) must be rounding noise in both."""
    theirs = {k: v.grad.numpy() for k, v in theirs.named_parameters()}
    scale = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in theirs.values()))
    noise = 1e3 * np.finfo(dtype).eps * scale
    for key, p in ours.named_parameters():
        if np.linalg.norm(theirs[key]) <= noise:
            assert np.linalg.norm(p.grad) <= noise, f"{key}: should be zero"
        else:
            error = relative_error(p.grad, theirs[key])
            assert error < tolerance, f"{np.dtype(dtype)} {key}: relative error {error:.2e}"


def kink_sides(kind, x):
    """Which side of each kink an input is on: for a ReLU, input > 0; for a 2x2 max pool,
    the index of each window's winner (the first maximum in row-major order)."""
    if kind == "relu":
        return x > 0
    N, C, H, W = x.shape
    windows = x[:, :, :H // 2 * 2, :W // 2 * 2].reshape(N, C, H // 2, 2, W // 2, 2)
    return windows.transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H // 2, W // 2, 4).argmax(-1)


def our_kink_sides(model, x):
    """kink_sides at every ReLU and max pool of our VGG's forward (``VGG.forward``, layer by
    layer); batch norm's running statistics are left as they were."""
    buffers = {key: b.copy() for key, b in model.named_buffers()}
    sides, h = [], tv.tensor(x)
    with tv.no_grad():
        for layer in [*model.features, model.avgpool, "flatten", *model.classifier]:
            if isinstance(layer, (nn.ReLU, nn.MaxPool2x2)):
                sides.append(kink_sides("relu" if isinstance(layer, nn.ReLU) else "pool",
                                        h.numpy()))
            h = tv.functional.flatten(h, 1) if layer == "flatten" else layer(h)
    model.load_state_dict(buffers, strict=False)
    return sides


def torch_kink_sides(model, x):
    """kink_sides at every ReLU and max pool of a torch VGG's forward, read by pre-hooks
    (before the in-place ReLUs overwrite their input); running statistics are restored."""
    buffers = {key: b.clone() for key, b in model.named_buffers()}
    sides = []

    def record(module, inputs):
        kind = "relu" if isinstance(module, tnn.ReLU) else "pool"
        sides.append(kink_sides(kind, inputs[0].numpy()))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, (tnn.ReLU, tnn.MaxPool2d))]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    model.load_state_dict(buffers, strict=False)
    return sides


def kink_free_input(ours, theirs, shape, dtype, seeds=range(1, 21)):
    """(seed, x): the first seed whose standard normal input puts our forward, torch's forward
    (both in ``dtype``) and torch's float64 forward on the same side of every kink."""
    exact = copy.deepcopy(theirs).double()

    def same(a, b):
        return len(a) == len(b) and all(map(np.array_equal, a, b))

    for seed in seeds:
        x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
        sides = our_kink_sides(ours, x)
        if (same(sides, torch_kink_sides(theirs, x))
                and same(sides, torch_kink_sides(exact, x.astype(np.float64)))):
            return seed, x
    pytest.fail(f"no input among seeds {seeds} is on the same side of every kink in "
                "our forward, torch's and float64's")


def torch_state(model):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, dtype", [("vgg11", np.float64), ("vgg16", np.float64),
                                         ("vgg16", np.float32), ("vgg11_bn", np.float64),
                                         ("vgg11_bn", np.float32)])
def test_full_size_vgg_matches_torch_logits_and_parameter_gradients(name, dtype):
    """torchvision's exact architecture (138M parameters for VGG-16) on a small batch of
    32x32 images in training mode; dropout off so both frameworks compute the same function.

    The function is piecewise smooth: each ReLU and max pool decides a side of a kink, and
    with random data some of these decisions are near-ties closer than float32 rounding,
    which each machine's BLAS kernels decide their own way. A gradient across a kink is not
    a question of float32 accuracy, so in float32 both frameworks are compared at the first
    input that is on the same side of every kink in their forwards and in float64's."""
    tv.manual_seed(0)
    ours = vgg(name, dropout=0.0, dtype=dtype)
    theirs = torch_vgg(ours.config, ours.batch_norm, dropout=0.0,
                       dtype=torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict(torch_state(ours), strict=True)
    if dtype == np.float64:
        x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    else:
        _, x = kink_free_input(ours, theirs, (2, 3, 32, 32), dtype)
    labels = np.array([3, 998])

    logits = ours(tv.tensor(x))
    loss = tv.functional.cross_entropy(logits, labels)
    loss.backward()
    torch_logits = theirs(torch.from_numpy(x))
    torch_loss = tnn.functional.cross_entropy(torch_logits, torch.from_numpy(labels))
    torch_loss.backward()

    tolerance = TOLERANCE[dtype]
    assert logits.dtype == dtype
    assert relative_error(logits.numpy(), torch_logits.detach().numpy()) < tolerance
    assert loss.item() == pytest.approx(torch_loss.item(), rel=tolerance)
    assert_gradients_match(ours, theirs, tolerance, dtype)
    if ours.batch_norm:  # the running statistics moved the same way
        torch_buffers = dict(theirs.named_buffers())
        for key, buffer in ours.named_buffers():
            assert relative_error(buffer, torch_buffers[key].numpy()) < tolerance


@pytest.mark.parametrize("name", ["vgg11_lrn", "vgg16c", "vgg19_bn"])
def test_every_other_configuration_matches_torch(name):
    tv.manual_seed(2)
    ours = vgg(name, width=0.25, head="compact", num_classes=10, dropout=0.0, dtype=np.float64)
    theirs = torch_vgg(ours.config, ours.batch_norm, num_classes=10, dropout=0.0, width=0.25,
                       head="compact", dtype=torch.float64)
    theirs.load_state_dict(torch_state(ours), strict=True)
    x = np.random.default_rng(3).standard_normal((3, 3, 40, 36))
    logits = ours(tv.tensor(x))
    logits.backward(np.ones_like(logits.numpy()))
    torch_logits = theirs(torch.from_numpy(x))
    torch_logits.backward(torch.ones_like(torch_logits))
    assert relative_error(logits.numpy(), torch_logits.detach().numpy()) < 1e-10
    assert_gradients_match(ours, theirs, 1e-10, np.float64)


def test_a_torchvision_style_vgg16_file_loads_and_classifies_an_image(tmp_path):
    """The path of a user holding torchvision's pretrained vgg16-397923af.pth: here a
    torch-built VGG-16 with random weights, saved as torchvision saves its state_dict."""
    torch.manual_seed(0)
    theirs = torch_vgg("D").eval()
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(theirs.state_dict(), path)

    ours = vgg("vgg16", weights=path).eval()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    batch = preprocess(photo)
    assert batch.shape == (1, 3, 224, 224) and batch.dtype == np.float32

    with tv.no_grad():
        logits = ours(tv.tensor(batch)).numpy()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(batch)).numpy()
    assert relative_error(logits, expected) < 1e-4
    classes, probabilities = top_k(logits, k=5)
    assert classes.shape == (1, 5) and np.all(np.diff(probabilities) <= 0)
    assert classes[0, 0] == int(np.argmax(expected))


def test_weights_exported_to_pth_load_into_torch_with_weights_only(tmp_path):
    ours = vgg("vgg13_bn", width=0.25, head="compact", num_classes=10)
    ours.train()
    ours(tv.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)))
    path = tv.save(ours, tmp_path / "ours.pth")

    theirs = torch_vgg("B", batch_norm=True, num_classes=10, width=0.25, head="compact")
    theirs.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert int(theirs.features[1].num_batches_tracked) == 1
    ours.eval(), theirs.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert relative_error(ours(tv.tensor(x)).numpy(), expected) < 1e-4
    assert list(tv.load(path)) == list(ours.state_dict())


def test_pth_that_is_not_weights_only_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": torch.zeros(2), "config": object()}, path)
    with pytest.raises(ValueError, match="cannot be read as a weights-only PyTorch file"):
        tv.load(path)


def test_pth_checkpoint_wrapping_a_state_dict_is_unwrapped(tmp_path):
    model = vgg("vgg11", width=0.125, head="compact")
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": torch_state(model), "epoch": 3}, path)
    assert list(tv.load(path)) == list(model.state_dict())
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state_dict"):
        tv.load(tmp_path / "list.pth")


def test_preprocess_resizes_like_pillow():
    Image = pytest.importorskip("PIL.Image")
    from tinyvgg.data.transforms import resize
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(91, 130, 3), dtype=np.uint8)
    for size in [(40, 57), (91, 130), (150, 200)]:
        expected = np.asarray(Image.fromarray(photo).resize(size[::-1], Image.BILINEAR),
                              dtype=np.float64)
        difference = np.abs(resize(photo, size) - expected)
        # Pillow rounds to 8 bits after each of its two passes
        assert difference.max() <= 1.0 + 1e-9 and difference.mean() < 0.35
