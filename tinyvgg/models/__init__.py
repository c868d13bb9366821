"""The VGG family: ``tinyvgg.models.vgg16()`` and friends."""
from .dense import DenseVGG, multi_scale_scores, resize_images
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, preprocess, top_k
from .vgg import (NAMES, VGG, cfgs, conv1, initialize, make_layers, resolve, vgg, vgg11,
                  vgg11_lrn, vgg13, vgg16, vgg16c, vgg19)

__all__ = ["VGG", "cfgs", "conv1", "make_layers", "initialize", "resolve", "vgg", "vgg11",
           "vgg11_lrn", "vgg13", "vgg16c", "vgg16", "vgg19", "NAMES", "preprocess", "top_k",
           "IMAGENET_MEAN", "IMAGENET_STD", "DenseVGG", "multi_scale_scores", "resize_images"]
