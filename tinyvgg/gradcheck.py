"""``tinyvgg.gradcheck``, kept where users import it from; the code is in ``tools/gradcheck.py``."""
from .tools.gradcheck import (FULL_JACOBIAN_LIMIT, TOLERANCES, GradcheckError, gradcheck,
                              kink_free, tie_free)

__all__ = ["TOLERANCES", "FULL_JACOBIAN_LIMIT", "GradcheckError", "gradcheck", "kink_free",
           "tie_free"]
