"""Layers and containers: ``tinyvgg.nn``."""
from . import init
from .layers import (AdaptiveAvgPool2d, BatchNorm2d, Conv1x1, Conv3x3, Dropout, Flatten,
                     Linear, LocalResponseNorm, MaxPool2x2, ReLU, Tanh, conv_relu,
                     use_conv_relu, using_conv_relu)
from .module import Module, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential", "Conv3x3", "Conv1x1", "MaxPool2x2", "ReLU",
           "Tanh", "Linear", "Dropout", "BatchNorm2d", "LocalResponseNorm", "Flatten",
           "AdaptiveAvgPool2d", "init", "use_conv_relu", "using_conv_relu", "conv_relu"]
