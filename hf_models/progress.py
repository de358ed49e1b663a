"""Progress bars that name their stage, stay quiet when asked, and never write escape codes to a non-terminal.

Library code imports ``from .progress import tqdm`` instead of ``tqdm.auto``: the bar is shown only when

* progress is on (:func:`set_progress`; the recipes switch it off with ``--disable_tqdm``), and
* standard error is a terminal (or a notebook): a log file or a pipe gets no ``\\r`` / ANSI codes.

Every bar's ``desc`` names its stage and, where there is one, its world (``encoding entities (lego)``).
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm as _tqdm

_STATE = {"enabled": True}


def set_progress(enabled: bool) -> None:
    """Switch every progress bar of the package (and of ``datasets``) on or off."""
    _STATE["enabled"] = bool(enabled)
    try:
        import datasets

        if enabled and interactive():
            datasets.enable_progress_bars()
        else:
            datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


def interactive() -> bool:
    """Standard error is a terminal, or we run in a notebook kernel (tqdm.auto then draws a widget)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules


def progress_enabled() -> bool:
    return _STATE["enabled"] and interactive()


def tqdm(iterable: Any = None, *args: Any, disable: bool | None = False, **kwargs: Any):
    """``tqdm.auto.tqdm``, disabled when the caller asks, when progress is off, or when stderr is no terminal."""
    return _tqdm(iterable, *args, disable=bool(disable) or not progress_enabled(), **kwargs)
