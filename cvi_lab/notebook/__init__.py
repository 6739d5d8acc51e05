"""Notebook helpers: the in-kernel server, a sync API client, the call control panel, stage widgets, charts.

    from cvi_lab.notebook import ControlPanel
    ControlPanel()          # starts the server in this kernel; pick persona, replica, ... and Start call

Widgets are imported lazily so `cvi_lab.notebook.client` and `.server` work without ipywidgets.
"""

from cvi_lab.notebook.client import ApiClient, ApiError
from cvi_lab.notebook.server import LocalServer, RemoteServer, connect, start_server

__all__ = ["ApiClient", "ApiError", "ControlPanel", "LocalServer", "RemoteServer", "connect", "start_server"]


def __getattr__(name: str):
    if name == "ControlPanel":
        from cvi_lab.notebook.panel import ControlPanel

        return ControlPanel
    raise AttributeError(name)
