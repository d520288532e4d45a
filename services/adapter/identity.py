"""Who is calling: the one place the Adapter asks for a caller's identity.

Sessions are scoped to this name. It is the authenticated identity when the
server authenticates callers, and otherwise the ``caller`` request metadata
that ``dial_client``'s ``caller=`` option sends (``anonymous`` without it);
the shared authentication layer decides which.
"""
from __future__ import annotations

from dial_services.common.auth import ANONYMOUS, CALLER_METADATA_KEY, caller_identity

__all__ = ["ANONYMOUS", "CALLER_METADATA_KEY", "caller_of"]


def caller_of(context) -> str:
    return caller_identity(context)
