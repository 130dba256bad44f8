"""matplotlib, loaded only for the commands that draw (``--plot``), from the ``plot`` extra.

The SDK an application embeds has no use for a plotting library; ``pip install
'accord[plot]'`` adds it for ``accord sim --plot`` and ``accord bench consensus --plot``.
"""

from __future__ import annotations

from typing import Any

from accord.base.errors import AccordError


class PlotUnavailable(AccordError):
    """matplotlib is not installed."""

    code = "plot_unavailable"


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'accord[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
