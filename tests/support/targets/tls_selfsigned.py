"""An aiohttp echo over TLS with an untrusted certificate and legacy TLS allowed: a scan target.

Run: ``python tls_selfsigned.py --port N --cert-dir DIR``. Listens on 127.0.0.1:N/ws over TLS
only (``wss://``; no plaintext listener). Echo: each text message comes back as the same text,
each binary message as the same bytes.

The certificate is for ``127.0.0.1`` (and ``localhost``), issued by a throw-away ``trustme``
CA. Files in DIR: ``ca.pem`` (the CA; kept so a test can trust it on purpose), ``cert.pem``
(leaf + chain) and ``key.pem``; they are made when missing and reused when present.

SEEDED weaknesses (what a scanner should report):

- Untrusted certificate: a client that is not given ``DIR/ca.pem`` fails verification
  (``CERTIFICATE_VERIFY_FAILED``: unable to get local issuer certificate). The name matches
  127.0.0.1, so there is no hostname error, and the certificate is not expired.
- Legacy TLS offered: ``minimum_version = TLSv1`` and ciphers ``DEFAULT:@SECLEVEL=0``. Whether a
  TLS 1.0 / 1.1 handshake actually succeeds depends on the local OpenSSL build: with OpenSSL
  3.0.x as shipped by Debian/Python, SECLEVEL=0 re-enables them and a client limited to TLS 1.0
  or 1.1 (also at SECLEVEL=0) completes the handshake.
- Cross-Site WebSocket Hijacking: no Origin check (any or no Origin gets 101).
- Host spoofing: any Host header is accepted.
- No authentication; aiohttp's default limits (4 MiB messages); the default
  ``Server: Python/3.x aiohttp/3.x`` header; reflected input. Compression off.
"""

from __future__ import annotations

import argparse
import ssl
import warnings
from pathlib import Path

from aiohttp import web
from aiohttp_echo import make_app  # a sibling script: its folder is on sys.path


def certificate_files(folder: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` in ``folder``, made with a new trustme CA when missing."""
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    if not (cert_file.exists() and key_file.exists() and ca_file.exists()):
        import trustme

        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        leaf.private_key_pem.write_to_path(str(key_file))
        cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        ca.cert_pem.write_to_path(str(ca_file))
    return cert_file, key_file


def server_context(folder: Path) -> ssl.SSLContext:
    cert_file, key_file = certificate_files(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy TLS is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(cert_file, key_file)
    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(compress=False),
        host="127.0.0.1",
        port=args.port,
        ssl_context=server_context(args.cert_dir),
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
