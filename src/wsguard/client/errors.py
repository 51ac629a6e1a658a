"""The one exception the Python client raises for a refusal, a failure or a timeout."""

from __future__ import annotations

from wsguard.exceptions import WsGuardError

__all__ = ["ClientError"]


class ClientError(WsGuardError):
    """A request, a connection or an internal API call failed.

    ``reason`` is stable and machine-readable: branch on it. Errors the server chose carry its
    ``code`` and ``reason`` unchanged (``403 forbidden``, ``404 unknown_method``, ``503
    timeout``; see docs/reference/codes.md). The client adds its own reasons:

    - ``timeout`` (code 0): no reply within the client's ``timeout``;
    - ``disconnected`` (code: the close code, 1006 when none came): the socket dropped
      while the request waited for its reply;
    - ``closed`` (code: the close code): the connection ended for good: a terminal close
      code from the server (4403, 4408, ...) or ``Client.close`` (1000);
    - ``handshake_refused`` (code: the HTTP status): the server refused the opening
      handshake (401, 403, ...);
    - ``retries_exhausted`` (code: the last failure's): ``max_retries`` attempts in a row
      failed;
    - ``credential_failed`` (code 0, or that of the provider's ``ClientError``): the ticket or
      token provider raised;
    - ``unreachable`` (code 0): no TCP or TLS connection to the server;
    - ``tls_failed`` (code 0): the server's certificate is not trusted;
    - ``unavailable`` (code 0): the internal API could not be reached; ``bad_response`` (code:
      the HTTP status) when it answered something that is not its JSON error.

    Attributes:
        code: the server's error code, a close code, an HTTP status, or 0.
        reason: the stable reason.
        message: for people; may change between releases.
    """

    def __init__(self, code: int, reason: str, message: str = "") -> None:
        self.code = code
        self.reason = reason
        self.message = message
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
