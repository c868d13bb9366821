"""``tinyvgg.gradcheck``, kept where users import it from; the code is in ``tools/gradcheck.py``."""
from .tools.gradcheck import *  # noqa: F401,F403
from .tools.gradcheck import __all__  # noqa: F401
