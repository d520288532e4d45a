"""Errors as messages a user can act on, never a traceback in a dialog.

Every failure the plugin shows goes through :func:`user_message`; the
traceback of an unexpected one goes to the DIAL tab of QGIS's log panel.
"""
from __future__ import annotations

import traceback


class PluginError(Exception):
    """A problem the user can fix in QGIS (no layer chosen, extent too large, ...); the text says how."""


class TaskCancelled(Exception):
    """The user cancelled a running task."""


def _server_message(error) -> str:
    text = error.message or error.code.name.replace("_", " ").lower()
    for violation in error.field_violations:
        text += f"; {violation.field}: {violation.description}"
    return text


def user_message(error: BaseException, *, address: str = "") -> str:
    """One or two sentences saying what went wrong and what to do about it."""
    import dial_client as dc

    where = f" at {address}" if address else ""
    if isinstance(error, (PluginError, TaskCancelled)):
        return str(error)
    if isinstance(error, dc.Unavailable):
        return (f"Cannot reach the DIAL server{where}. Is it running (`make up` starts one)? "
                "Check the address and TLS settings in the DIAL panel.")
    if isinstance(error, dc.Unauthenticated):
        return f"The DIAL server{where} needs a valid token: set it in the DIAL panel's connection settings."
    if isinstance(error, dc.PermissionDenied):
        return (f"The DIAL server refused: {_server_message(error)}. A raster the server reads must lie under "
                "its allowed roots (--raster-roots); ask its operator, or let the plugin send the pixels.")
    if isinstance(error, dc.InvalidArgument):
        return f"The DIAL server cannot use this input: {_server_message(error)}."
    if isinstance(error, dc.NotFound):
        return f"Not found on the DIAL server: {_server_message(error)}. Press Check to refresh the model list."
    if isinstance(error, dc.ResourceExhausted):
        return f"The DIAL server is at a limit: {_server_message(error)}. Try a smaller extent, or later."
    if isinstance(error, dc.DeadlineExceeded):
        return "The DIAL server did not answer in time. Try a smaller extent, or check the server's load."
    if isinstance(error, dc.FailedPrecondition):
        return f"Not possible now: {_server_message(error)}."
    if isinstance(error, dc.DialError):
        return f"The DIAL server failed ({error.code.name}): {_server_message(error)}. Its log has the details."
    if isinstance(error, OSError):
        return f"A file could not be used: {error.strerror or error} ({getattr(error, 'filename', '') or ''})."
    return (f"Unexpected error ({type(error).__name__}: {error}). The DIAL tab of the log panel has the details; "
            "please report it.")


def log_unexpected(error: BaseException) -> None:
    """The traceback, for the log panel only."""
    try:
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage("".join(traceback.format_exception(error)), "DIAL", Qgis.Warning)
    except ImportError:  # outside QGIS
        traceback.print_exception(error)
