"""``tinyvgg.profiler``, kept where users import it from; the code is in ``tools/profiler.py``."""
from .tools.profiler import GROUPINGS, MODEL, NO_LAYER, NOT_PROFILED, OpCall, profile

__all__ = ["MODEL", "NO_LAYER", "NOT_PROFILED", "GROUPINGS", "OpCall", "profile"]
