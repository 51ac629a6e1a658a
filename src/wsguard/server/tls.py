"""The TLS context of the public listener: TLS 1.2 or newer, optional client certificates."""

from __future__ import annotations

import ssl

from wsguard.exceptions import ConfigError
from wsguard.settings import ServerConfig

__all__ = ["build_ssl_context"]


def build_ssl_context(server: ServerConfig) -> ssl.SSLContext | None:
    """Build the server's SSL context, or ``None`` when TLS is not configured.

    Raises:
        ConfigError: naming the field whose file could not be loaded.
    """
    if not server.tls_cert or not server.tls_key:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996); the stdlib defaults already exclude weak
    # ciphers and compression (CRIME).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(server.tls_cert, server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("server.tls_cert", f"cannot load certificate and key: {exc}") from None
    if server.tls_client_ca:
        try:
            context.load_verify_locations(cafile=server.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("server.tls_client_ca", f"cannot load CA file: {exc}") from None
        # A presented certificate is always verified against the CA; "optional" only lets
        # clients without a certificate through (to authenticate another way).
        context.verify_mode = (
            ssl.CERT_REQUIRED if server.tls_client_auth == "required" else ssl.CERT_OPTIONAL
        )
    return context
