"""tinyvgg: a from-scratch deep learning engine for studying backprop on VGG networks."""
from . import functional, models, nn, optim
# the public module tinyvgg.gradcheck is loaded here, before the name is bound to the function,
# so that importing the module later leaves tinyvgg.gradcheck the function
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed
from .io.serialization import load, save
from .tools.summary import summary
from .tensor import Function, Tensor, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck",
           "GradcheckError", "manual_seed", "functional", "nn", "models", "optim", "summary", "save",
           "load", "__version__"]
