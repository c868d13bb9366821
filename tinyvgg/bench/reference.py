"""PyTorch, the reference every benchmark compares with: found where it can run, its
precision modes on the GPU, and its VGG-16 in our layout.

Every benchmark runs without PyTorch too, timing tinyvgg alone; a ``torch`` argument of
:data:`FIND` (the default) means "PyTorch if it can run on the device, else None".
"""
from __future__ import annotations

from ..models import cfgs

#: PyTorch's precisions on the GPU: "strict" FP32 everywhere, and TF32 allowed for
#: convolutions and matrix products
TORCH_MODES = ("strict", "tf32")
#: the mode each of our precisions (``tinyvgg.ops.tensor_cores.PRECISIONS``) is timed
#: against: 3xTF32 promises float32's accuracy, so it answers to strict FP32 as the SIMT
#: rungs do, and only TF32 rungs are compared with PyTorch's TF32
TORCH_MODE_OF_PRECISION = {"strict": "strict", "3xtf32": "strict", "tf32": "tf32"}


class _Find:
    def __repr__(self):
        return "FIND"


#: the default ``torch`` argument: look PyTorch up for the device (:func:`torch_for`)
FIND = _Find()


def torch_for(device: str = "cpu", torch=FIND):
    """PyTorch where it can run on ``device`` (installed, and for "cuda" built with CUDA
    and seeing a GPU), else None; a ``torch`` already given (a module or None) as it is."""
    if torch is not FIND:
        return torch
    try:
        import torch
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    return torch


def set_torch_mode(torch, mode: str):
    """"strict": FP32 everywhere (no TF32); "tf32": TF32 for convolutions and matmuls."""
    tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def torch_vgg16(head: str, num_classes: int):
    """torchvision's VGG-16 layout (features / avgpool / classifier) in PyTorch, with the
    classifier of ``tinyvgg.models.vgg16(head=head)`` so that state_dicts carry over."""
    torch = torch_for()
    tnn = torch.nn
    layers, c_in = [], 3
    for v in cfgs["D"]:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c_in, v, 3, padding=1), tnn.ReLU(inplace=True)]
            c_in = v
    pool, hidden = (7, 4096) if head == "imagenet" else (1, 512)
    model = tnn.Module()
    model.features = tnn.Sequential(*layers)
    model.avgpool = tnn.AdaptiveAvgPool2d(pool)
    model.classifier = tnn.Sequential(
        tnn.Linear(512 * pool * pool, hidden), tnn.ReLU(True), tnn.Dropout(0.5),
        tnn.Linear(hidden, hidden), tnn.ReLU(True), tnn.Dropout(0.5),
        tnn.Linear(hidden, num_classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    return model
