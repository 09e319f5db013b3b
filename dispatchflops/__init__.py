"""dispatchflops: FLOPs, parameters and activations per module path of a real eager run."""
try:
    from . import _C  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "dispatchflops: the C++ extension dispatchflops._C is missing or broken "
        f"({e}); reinstall with `pip install -e .` to build it"
    ) from None

from .distributed import JobResults, gather
from .meter import Step, StepMeter
from .mmengine import get_model_complexity_info
from .mode import FlopCounterMode
from .ops import register_flop_formula, unregister_flop_formula
from .results import ModuleCost, Results
from .version import __version__

__all__ = ["FlopCounterMode", "get_model_complexity_info", "register_flop_formula",
           "unregister_flop_formula", "ModuleCost", "Results", "JobResults", "gather",
           "Step", "StepMeter", "__version__"]
