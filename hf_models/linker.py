"""Compatibility module: the linker lives in :mod:`hf_models.linking` (inputs, detection, linking)."""

from .linking import *  # noqa: F403
from .linking import __all__  # noqa: F401
