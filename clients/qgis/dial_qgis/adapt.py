"""Adapt: a DISCA session on a window of the layer, kept in the QGIS project so that it survives a restart."""
from __future__ import annotations

from .errors import PluginError, TaskCancelled
from .workspace import Workspace

SCOPE = "dial"


def _entries(project) -> tuple[str, str, tuple[int, ...]]:
    session, _ = project.readEntry(SCOPE, "adapter/session", "")
    image, _ = project.readEntry(SCOPE, "adapter/image", "")
    window, _ = project.readEntry(SCOPE, "adapter/window", "")
    return session, image, tuple(int(v) for v in window.split(",")) if window else ()


def start(ws: Workspace, project, window: tuple[int, int, int, int] | None = None) -> str:
    """Create a session on ``window`` (default: the whole layer); its id goes into ``project``."""
    grid, model = ws.require()
    window = window or (0, 0, grid.height, grid.width)
    with ws.settings.adapter_client() as client:
        if ws.settings.server_reads_file:
            session = client.create_session(ws.image_path, model=model.name, version=model.version, window=window)
        else:
            session = client.create_session(ws.read_image(*window), model=model.name, version=model.version,
                                            geo=ws.window_geo(window[0], window[1]))
    project.writeEntry(SCOPE, "adapter/session", session.session_id)
    project.writeEntry(SCOPE, "adapter/image", ws.image_path)
    project.writeEntry(SCOPE, "adapter/window", ",".join(str(v) for v in window))
    return session.session_id


def current(ws: Workspace, project):
    """(session id, window) of this image's session kept in the project, or None."""
    session, image, window = _entries(project)
    if not session or image != ws.image_path or len(window) != 4:
        return None
    return session, window


def resume(ws: Workspace, project):
    """The session kept in ``project`` for this image, as the server has it now (a ``SessionInfo``), or None
    when the project keeps none; a session the server no longer has is forgotten, with a message."""
    import dial_client

    found = current(ws, project)
    if found is None:
        return None
    try:
        with ws.settings.adapter_client() as client:
            return client.get_session(found[0]).info
    except dial_client.NotFound:
        forget(project)
        raise PluginError("The adaptation session saved with this project is gone from the server (idle "
                          "sessions expire); press Start session for a new one.") from None


def adapt(ws: Workspace, project, *, progress=None, cancelled=None) -> tuple[int, int, int, int]:
    """Send the clicks made in the session's window, adapt, and write the session's map; returns the window.

    ``progress(percent)`` follows the three calls (clicks, adaptation, prediction); ``cancelled()``
    returning True stops before the next one, leaving the class map as it was.
    """
    def step(percent: float) -> None:
        if cancelled is not None and cancelled():
            raise TaskCancelled("Adaptation cancelled; the class map is unchanged.")
        if progress is not None:
            progress(percent)

    found = current(ws, project)
    if found is None:
        raise PluginError("Start an adaptation session on this layer first.")
    session_id, (row_off, col_off, height, width) = found
    grid = ws.grid
    inside = []
    for c in ws.clicks:
        r, k = grid.pixel(c.x, c.y)
        if row_off <= r < row_off + height and col_off <= k < col_off + width:
            inside.append(c)
    with ws.settings.adapter_client() as client:
        session = client.get_session(session_id)
        new = inside[len(session.info.clicks):]
        if new:
            session.add_clicks(new)
        if not session.info.clicks:
            raise PluginError("Click on the map inside the session's window first: adaptation learns from clicks.")
        step(10)
        session.adapt()
        step(70)
        labels = session.predict().labels
    step(95)
    ws.apply(row_off, col_off, labels)
    step(100)
    return row_off, col_off, height, width


def forget(project) -> None:
    project.removeEntry(SCOPE, "adapter")
