"""Progress bars on stderr for long work (silent when a command runs ``--quiet``)."""

from __future__ import annotations

import sys

import progressbar


def progress_bar(
    total: int, label: str, enabled: bool = True, variables: tuple[str, ...] = ()
) -> progressbar.ProgressBar:
    """A progress bar on stderr showing ``variables`` too; a silent one if not ``enabled``.

    Set a variable with ``bar.update(count, name=value)``.
    """
    if not enabled:
        return progressbar.NullBar(max_value=total)
    widgets: list = [f"{label} ", progressbar.Counter(), f"/{total} "]
    for name in variables:
        widgets += [progressbar.Variable(name, format="{formatted_value}", width=1), " "]
    widgets += [progressbar.Bar(), " ", progressbar.ETA()]
    return progressbar.ProgressBar(max_value=total, widgets=widgets, fd=sys.stderr)
