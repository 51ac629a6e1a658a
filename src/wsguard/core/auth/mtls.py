"""mTLS: the identity of a verified TLS client certificate.

Performs no I/O; reads no clock. The TLS layer verified the chain against
``server.tls_client_ca`` before any byte of HTTP was read; a certificate from an unknown CA
never gets this far. This method only names the user: the subject's common name, or its first
subject alternative name (``auth.mtls.identity``).
"""

from __future__ import annotations

from typing import Final, Literal

from wsguard.core.decisions import Principal
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import UpgradeRequest

__all__ = ["MtlsAuthenticator"]

_MAX_IDENTITY: Final = 255


class MtlsAuthenticator:
    """Authenticates the holder of a verified client certificate.

    Args:
        identity: ``"cn"`` (subject common name) or ``"san"`` (first subject alternative name).
    """

    __slots__ = ("_identity",)

    def __init__(self, identity: Literal["cn", "san"] = "cn") -> None:
        self._identity = identity

    @property
    def name(self) -> str:
        return "mtls"

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Principal | None:
        """The certificate's identity, or ``None`` without a certificate (or without the
        chosen identity field, or with one unfit to be a user id)."""
        cert = request.client_cert
        if cert is None:
            return None
        user = cert.subject_cn if self._identity == "cn" else (cert.san[0] if cert.san else None)
        # Control characters in a user id would forge lines in the logs that print it.
        if not user or len(user) > _MAX_IDENTITY or not user.isprintable():
            return None
        return Principal(user_id=user, method="mtls")
