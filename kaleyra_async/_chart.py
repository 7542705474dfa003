"""The report's PNG chart (the only matplotlib import; matplotlib is the optional ``chart``
extra)."""

from __future__ import annotations

import os

from ._delivery import DeliverySummary
from ._exceptions import ConfigError

__all__ = ["write_chart"]

_ORDER = ("delivered", "pending", "expired", "undelivered", "failed", "not_sent")


def write_chart(summary: DeliverySummary, path: str | os.PathLike[str]) -> None:
    """A bar chart of accepted rows per delivery state, and the top trace codes, as a PNG.

    Raises:
        ConfigError: matplotlib is not installed, or the file cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--chart needs matplotlib: pip install 'kaleyra_async[chart]'") from None
    traces = summary.traces.most_common(10)
    fig, (states_ax, traces_ax) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        counts = [summary.states.get(state, 0) for state in _ORDER]
        states_ax.bar(_ORDER, counts, color="tab:blue")
        rate = summary.delivery_rate
        shown = "n/a" if rate is None else f"{rate:.1%}"
        states_ax.set_title(f"delivery of {summary.accepted:,} accepted rows ({shown} delivered)")
        states_ax.tick_params(axis="x", rotation=30)
        traces_ax.barh([t for t, _ in traces][::-1], [n for _, n in traces][::-1], color="tab:red")
        traces_ax.set_title("top trace codes (not delivered)")
        fig.tight_layout()
        fig.savefig(path, format="png")
    except OSError as exc:
        raise ConfigError(f"cannot write {os.fspath(path)}: {exc.strerror}") from None
    finally:
        plt.close(fig)
