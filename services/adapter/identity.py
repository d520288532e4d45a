"""Who is calling: the one place the Adapter reads a caller's identity.

Until authentication provides a verified identity, the caller names itself
in the ``caller`` request metadata (what ``dial_client``'s ``caller=`` option
sends); a call without it is ``anonymous``. Sessions are scoped to this name.
"""
from __future__ import annotations

CALLER_METADATA_KEY = "caller"
ANONYMOUS = "anonymous"


def caller_of(context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == CALLER_METADATA_KEY and value:
            return str(value)
    return ANONYMOUS
