"""``tinyvgg.profiler``, kept where users import it from; the code is in ``tools/profiler.py``."""
from .tools.profiler import *  # noqa: F401,F403
from .tools.profiler import __all__  # noqa: F401
