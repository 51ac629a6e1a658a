"""wss:// with certificates made per run by trustme, including client certificates."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import warnings
from pathlib import Path

import aiohttp
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from wsguard.settings import MtlsConfig
from wsguard.testing import loopback_settings

pytestmark = pytest.mark.integration

REFUSED_BY_TLS = (ssl.SSLError, ConnectionResetError, InvalidMessage)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        cert_file.write_bytes(cert_file.read_bytes() + extra.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return {"cert": str(cert_file), "key": str(key_file), "ca": str(ca_file)}


def tls_settings(files: dict[str, str], **server: object):
    return loopback_settings(
        server={
            "host": "127.0.0.1",
            "port": 0,
            "tls_cert": files["cert"],
            "tls_key": files["key"],
            **server,
        },
        auth={"required": False},
    )


def client_context(ca: trustme.CA, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context


async def test_wss_handshake_and_ping_over_tls(start_server, ca, server_files):
    server = await start_server(settings=tls_settings(server_files))
    origin = f"https://127.0.0.1:{server.port}"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"https://127.0.0.1:{server.port}/ws", origin=origin, ssl=client_context(ca)
        ) as ws,
    ):
        assert (await ws.receive_json(timeout=5))["push"] == "welcome"
        await ws.send_json({"id": 1, "op": "ping"})
        assert await ws.receive_json(timeout=5) == {"id": 1, "ok": True, "result": {}}


async def test_same_origin_over_tls_requires_https_origin(start_server, ca, server_files, audit):
    server = await start_server(settings=tls_settings(server_files))
    with pytest.raises(Exception) as info:  # noqa: PT011 - the status is asserted below
        async with connect(
            f"wss://127.0.0.1:{server.port}/ws",
            origin=f"http://127.0.0.1:{server.port}",  # scheme flip: http page, wss server
            ssl=client_context(ca),
        ):
            pass
    assert getattr(info.value, "response").status_code == 403  # noqa: B009
    assert audit.rejected()[-1]["reason"] == "origin_not_allowed"


async def test_tls_1_1_client_is_refused(start_server, ca, server_files, audit):
    server = await start_server(settings=tls_settings(server_files))
    context = client_context(ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: the point
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that only the server can refuse
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
    assert audit.events == []


async def test_required_client_certificate_from_our_ca_is_accepted(
    start_server, ca, server_files, audit
):
    settings = tls_settings(
        server_files, tls_client_ca=server_files["ca"], tls_client_auth="required"
    )
    server = await start_server(settings=settings)
    client_cert = ca.issue_cert("alice@example.com", common_name="alice")
    origin = f"https://127.0.0.1:{server.port}"
    async with connect(
        f"wss://127.0.0.1:{server.port}/ws", origin=origin, ssl=client_context(ca, client_cert)
    ) as ws:
        assert b"welcome" in (await ws.recv()).encode()


@pytest.mark.parametrize(("identity", "user"), [("cn", "alice"), ("san", "alice@example.com")])
async def test_mtls_authenticates_the_certificate_holder(
    start_server, ca, server_files, identity, user
):
    base = tls_settings(server_files, tls_client_ca=server_files["ca"])
    settings = dataclasses.replace(
        base,
        auth=dataclasses.replace(
            base.auth, required=True, methods=("mtls",), mtls=MtlsConfig(identity)
        ),
    )
    server = await start_server(settings=settings)
    client_cert = ca.issue_cert("alice@example.com", common_name="alice")
    origin = f"https://127.0.0.1:{server.port}"
    async with connect(
        f"wss://127.0.0.1:{server.port}/ws", origin=origin, ssl=client_context(ca, client_cert)
    ) as ws:
        welcome = json.loads(await ws.recv())
    assert (welcome["user"], welcome["auth"]) == (user, "mtls")


async def test_mtls_without_a_certificate_is_refused_401(start_server, ca, server_files, audit):
    base = tls_settings(server_files, tls_client_ca=server_files["ca"])
    settings = dataclasses.replace(
        base, auth=dataclasses.replace(base.auth, required=True, methods=("mtls",))
    )
    server = await start_server(settings=settings)
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            f"wss://127.0.0.1:{server.port}/ws",
            origin=f"https://127.0.0.1:{server.port}",
            ssl=client_context(ca),
        ):
            pass
    assert info.value.response.status_code == 401
    assert audit.rejected()[-1]["reason"] == "auth_required"


async def test_missing_client_certificate_is_refused_when_required(
    start_server, ca, server_files, audit
):
    settings = tls_settings(
        server_files, tls_client_ca=server_files["ca"], tls_client_auth="required"
    )
    server = await start_server(settings=settings)
    # With TLS 1.3 the client finishes its side first; the server's refusal arrives as an alert
    # or EOF where the HTTP response should be.
    with pytest.raises(REFUSED_BY_TLS):
        async with connect(
            f"wss://127.0.0.1:{server.port}/ws",
            origin=f"https://127.0.0.1:{server.port}",
            ssl=client_context(ca),
            open_timeout=5,
        ):
            pass
    assert audit.events == []


async def test_client_certificate_from_unknown_ca_is_refused(start_server, ca, server_files, audit):
    settings = tls_settings(
        server_files, tls_client_ca=server_files["ca"], tls_client_auth="optional"
    )
    server = await start_server(settings=settings)
    rogue = trustme.CA().issue_cert("mallory@example.com", common_name="mallory")
    with pytest.raises(REFUSED_BY_TLS):
        async with connect(
            f"wss://127.0.0.1:{server.port}/ws",
            origin=f"https://127.0.0.1:{server.port}",
            ssl=client_context(ca, rogue),
            open_timeout=5,
        ):
            pass
    assert audit.events == []


def test_unreadable_certificate_is_a_config_error_naming_the_field(tmp_path: Path):
    from wsguard.exceptions import ConfigError
    from wsguard.server.lifecycle import Server

    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    settings = loopback_settings(
        server={"host": "127.0.0.1", "port": 0, "tls_cert": str(bad), "tls_key": str(bad)},
        auth={"required": False},
    )

    async def start() -> None:
        await Server(settings).start()

    with pytest.raises(ConfigError) as info:
        asyncio.run(start())
    assert info.value.field == "server.tls_cert"
