"""The VGG networks of Simonyan & Zisserman (ICLR 2015), Table 1, as data.

Each configuration lists the feature extractor from input to last pool:
an int is a 3x3 convolution (stride 1, padding 1) with that many output
channels, followed by ReLU; ``conv1(n)`` a 1x1 convolution (config C);
``"M"`` a 2x2 max-pool with stride 2; ``"LRN"`` local response
normalisation (config A-LRN). Five pools halve a 224x224 image to 7x7.

The classifier is three fully connected layers, FC-4096, FC-4096 and
FC-``num_classes``, with ReLU and dropout after the first two. Built with
the defaults, every model has torchvision's layer order, initialisation and
``state_dict`` names and shapes, so PyTorch weights load as they are.

Two options make VGG trainable below ImageNet size: ``width`` scales every
channel count (0.25 turns 64..512 into 16..128), and ``head="compact"``
averages the last feature map to 1x1 and uses FC layers as wide as the last
convolution instead of 7x7x512 -> 4096 (a VGG-16 for 32x32 images at
width 0.25 with 10 classes has 955,098 parameters, not 138M).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import nn
from ..nn import init
from ..io.serialization import load


def conv1(width: int) -> tuple:
    """A 1x1 convolution with ``width`` output channels, in a configuration."""
    return ("conv1", width)


#: Table 1 of the paper. Weight layers: A 11, B 13, C 16, D 16, E 19.
cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, conv1(256), "M",
          512, 512, conv1(512), "M", 512, 512, conv1(512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
          512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

#: The model names users know, with their configuration.
NAMES = {"vgg11": "A", "vgg11_lrn": "A-LRN", "vgg13": "B", "vgg16c": "C", "vgg16": "D",
         "vgg19": "E"}
DEPTH = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}

#: LRN as the paper uses it, with AlexNet's constants: b = a / (2 + 1e-4 * sum a^2)^0.75
#: over 5 neighbouring channels (PyTorch's alpha is divided by size, hence 5 * 1e-4).
LRN_SETTINGS = dict(size=5, alpha=5e-4, beta=0.75, k=2.0)

HEADS = ("imagenet", "compact")


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def make_layers(cfg, batch_norm: bool = False, width: float = 1.0, in_channels: int = 3,
                dtype=np.float32) -> nn.Sequential:
    """The feature extractor of one configuration, as torchvision numbers its layers."""
    layers = []
    channels = in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2x2())
        elif item == "LRN":
            layers.append(nn.LocalResponseNorm(**LRN_SETTINGS))
        else:
            conv = nn.Conv1x1 if isinstance(item, tuple) else nn.Conv3x3
            out = scaled(item[1] if isinstance(item, tuple) else item, width)
            layers.append(conv(channels, out, dtype=dtype))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out, dtype=dtype))
            layers.append(nn.ReLU())
            channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """features -> avgpool -> flatten -> classifier, with torchvision's attribute names."""

    def __init__(self, features: nn.Sequential, pool_size: int, classifier: nn.Sequential,
                 config: str = "", batch_norm: bool = False):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = classifier
        self.config, self.batch_norm = config, batch_norm
        self.head = "imagenet" if pool_size == 7 else "compact"
        self.pools = sum(isinstance(m, nn.MaxPool2x2) for m in features)
        first = next(m for m in features if isinstance(m, (nn.Conv3x3, nn.Conv1x1)))
        self.in_channels = first.in_channels

    @property
    def name(self) -> str:
        name = {v: k for k, v in NAMES.items()}.get(self.config, "VGG")
        return name + ("_bn" if self.batch_norm else "")

    def forward(self, x):
        self._check_input(tuple(getattr(x, "shape", ())))
        x = self.features(x)
        x = self.avgpool(x)
        x = F.flatten(x, 1)
        return self.classifier(x)

    def layer_shapes(self, input_shape):
        """(layer, its input shape, its output shape) for every layer, in the order forward
        runs them, from the layers' hyperparameters alone: what a forward pass on an input
        of ``input_shape`` (N, C, H, W) meets, without computing it or needing weights."""
        shape = tuple(int(s) for s in input_shape)
        self._check_input(shape)
        for module in (*self.features, self.avgpool):
            shape, before = module.output_shape(shape), shape
            yield module, before, shape
        shape = (shape[0], int(np.prod(shape[1:], dtype=np.int64)))  # F.flatten(x, 1)
        for module in self.classifier:
            shape, before = module.output_shape(shape), shape
            yield module, before, shape

    def _check_input(self, shape):
        """Name the pool an image too small would reach with a 1-pixel side, before any work."""
        if len(shape) != 4:
            return  # the first convolution explains the expected (N, C, H, W)
        height, width = shape[2:]
        for index, module in enumerate(self.features):
            if isinstance(module, nn.MaxPool2x2):
                if height < 2 or width < 2:
                    smallest = 2 ** self.pools
                    raise ValueError(
                        f"input of {shape[2]}x{shape[3]} is too small: "
                        f"features.{index} ({type(module).__name__}) would get {height}x{width}, "
                        f"and its {self.pools} max-pools need at least "
                        f"{smallest}x{smallest} (input shape {shape})")
                height, width = height // 2, width // 2

    def extra_repr(self):
        return self.name


def _classifier(in_features: int, hidden: int, num_classes: int, dropout: float, dtype):
    return nn.Sequential(
        nn.Linear(in_features, hidden, dtype=dtype), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden, dtype=dtype), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes, dtype=dtype))


def initialize(model: nn.Module, generator=None) -> nn.Module:
    """torchvision's VGG initialisation: He normal (fan_out) for convolutions,
    N(0, 0.01) for linear layers, zero biases, batch norm at identity.

    The compact head is the exception: its linear layers get He normal
    (fan_in), and the last one N(0, 1/fan_in). N(0, 0.01) suits 4096-wide
    layers, where each layer scales its input's spread by about
    0.01 * sqrt(4096 / 2) = 0.45; in a 128-wide head the factor is 0.08, the
    three layers shrink the signal (and the gradient coming back) 2000-fold,
    and training stalls at chance, the lecture's vanishing-activation case.
    """
    compact = getattr(model, "head", "imagenet") == "compact"
    linears = [m for _, m in model.named_modules() if isinstance(m, nn.Linear)]
    for _, module in model.named_modules():
        if isinstance(module, (nn.Conv3x3, nn.Conv1x1)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                 generator=generator)
        elif isinstance(module, nn.Linear) and compact:
            init.kaiming_normal_(module.weight, mode="fan_in",
                                 nonlinearity="linear" if module is linears[-1] else "relu",
                                 generator=generator)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, 0.0, 0.01, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
        else:
            continue
        if module.bias is not None:
            init.zeros_(module.bias)
    return model


def resolve(config: str) -> tuple[str, bool]:
    """(configuration letter, batch norm) for ``"D"``, ``"vgg16"``, ``"vgg16_bn"``, ..."""
    key = config.strip()
    batch_norm = key.lower().endswith("_bn")
    if batch_norm:
        key = key[:-3]
    key = NAMES.get(key.lower(), key.upper())
    if key not in cfgs:
        known = ", ".join(list(cfgs) + list(NAMES))
        raise ValueError(f"vgg: unknown configuration {config!r}; known: {known} "
                         "(add _bn to a name for batch norm)")
    return key, batch_norm


def vgg(config: str = "D", num_classes: int = 1000, batch_norm: bool = False,
        dropout: float = 0.5, width: float = 1.0, head: str = "imagenet",
        hidden: int | None = None, in_channels: int = 3, init_weights: bool = True,
        weights=None, dtype=np.float32, generator=None) -> VGG:
    """A VGG network of one of the paper's configurations.

    config: ``"A"``, ``"A-LRN"``, ``"B"``, ``"C"``, ``"D"``, ``"E"`` or a name
        (``"vgg16"``; ``"vgg16_bn"`` sets batch_norm).
    num_classes: outputs of the last layer.   batch_norm: BN after every conv.
    dropout: drop probability of the two dropout layers.
    width: multiplier of every channel count (and of the compact head's FC width).
    head: ``"imagenet"`` (7x7 avgpool, FC 25088-4096-4096, as torchvision) or
        ``"compact"`` (1x1 avgpool, FC layers ``hidden`` wide; for 32x32 inputs).
    hidden: FC width; default 4096 for the ImageNet head, the last conv's width for compact.
    in_channels: 3 for RGB, 1 for grey digits.
    init_weights: torchvision's initialisation; ``False`` leaves zeros (to load weights into).
    weights: a ``.npz`` or ``.pth`` state_dict file to load.
    """
    letter, bn_by_name = resolve(config)
    batch_norm = batch_norm or bn_by_name
    if head not in HEADS:
        raise ValueError(f"vgg: head must be one of {HEADS}, got {head!r}")
    if not width > 0:
        raise ValueError(f"vgg: width must be positive, got {width}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"vgg: in_channels and num_classes must be positive, "
                         f"got {in_channels} and {num_classes}")
    features = make_layers(cfgs[letter], batch_norm, width, in_channels, dtype)
    last = [m for m in features if isinstance(m, (nn.Conv3x3, nn.Conv1x1))][-1].out_channels
    pool_size = 7 if head == "imagenet" else 1
    if hidden is None:
        hidden = scaled(4096, width) if head == "imagenet" else last
    classifier = _classifier(last * pool_size ** 2, hidden, num_classes, dropout, dtype)
    model = VGG(features, pool_size, classifier, letter, batch_norm)
    if init_weights and weights is None:
        initialize(model, generator)
    if weights is not None:
        model.load_state_dict(load(weights))
    return model


def vgg11(**options) -> VGG:
    """Configuration A: 8 conv + 3 FC layers."""
    return vgg("A", **options)


def vgg11_lrn(**options) -> VGG:
    """Configuration A-LRN: A with local response normalisation after the first conv."""
    return vgg("A-LRN", **options)


def vgg13(**options) -> VGG:
    """Configuration B: 10 conv + 3 FC layers."""
    return vgg("B", **options)


def vgg16c(**options) -> VGG:
    """Configuration C: B plus a 1x1 conv at the end of blocks 3, 4 and 5."""
    return vgg("C", **options)


def vgg16(**options) -> VGG:
    """Configuration D: 13 conv + 3 FC layers."""
    return vgg("D", **options)


def vgg19(**options) -> VGG:
    """Configuration E: 16 conv + 3 FC layers."""
    return vgg("E", **options)
