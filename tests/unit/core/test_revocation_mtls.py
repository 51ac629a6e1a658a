"""Revocation list and mTLS identity: pure, fake clock."""

from __future__ import annotations

import pytest
from handshake_factory import handshake  # type: ignore[import-not-found]

from wsguard.core.auth.mtls import MtlsAuthenticator
from wsguard.core.decisions import ANONYMOUS, Principal
from wsguard.core.handshake import HandshakeContext
from wsguard.core.revocation import Revocations
from wsguard.core.upgrade import ClientCert, UpgradeRequest

CTX = HandshakeContext("127.0.0.1", "https", "127.0.0.1", 8080, None)


def alice(issued_at: float | None) -> Principal:
    return Principal("alice", "jwt", issued_at=issued_at)


@pytest.mark.parametrize(
    ("issued_at", "revoked"),
    [
        pytest.param(99.0, True, id="issued-before"),
        pytest.param(100.0, True, id="issued-at-the-same-instant"),
        pytest.param(100.5, False, id="issued-after"),
        pytest.param(None, True, id="unknown-issue-time-counts-as-before"),
    ],
)
def test_revocation_refuses_credentials_issued_before_it(issued_at, revoked):
    revocations = Revocations(ttl=3600)
    revocations.revoke("alice", now=100.0)
    assert revocations.is_revoked(alice(issued_at), now=101.0) is revoked


def test_revocation_concerns_only_its_user_and_never_anonymous():
    revocations = Revocations(ttl=3600)
    revocations.revoke("alice", now=100.0)
    assert revocations.is_revoked(Principal("bob", "jwt", issued_at=0.0), now=101.0) is False
    assert revocations.is_revoked(ANONYMOUS, now=101.0) is False


def test_revocation_is_forgotten_after_its_ttl():
    revocations = Revocations(ttl=60)
    revocations.revoke("alice", now=100.0)
    assert revocations.is_revoked(alice(None), now=160.0) is True
    assert revocations.is_revoked(alice(None), now=160.1) is False
    assert len(revocations) == 0


def with_cert(cert: ClientCert | None) -> UpgradeRequest:
    request = handshake()
    return UpgradeRequest(
        request.method,
        request.target,
        request.http_version,
        request.headers,
        request.peer,
        is_tls=True,
        client_cert=cert,
    )


@pytest.mark.parametrize(
    ("identity", "cert", "user"),
    [
        pytest.param("cn", ClientCert("alice", ("alice@example.com",)), "alice", id="cn"),
        pytest.param(
            "san", ClientCert("alice", ("alice@example.com",)), "alice@example.com", id="san"
        ),
        pytest.param("cn", None, None, id="no-certificate"),
        pytest.param("cn", ClientCert(None, ("a@example.com",)), None, id="no-cn"),
        pytest.param("san", ClientCert("alice", ()), None, id="no-san"),
        pytest.param("cn", ClientCert("alice\nforged log line"), None, id="control-character"),
        pytest.param("cn", ClientCert("a" * 256), None, id="too-long"),
    ],
)
def test_mtls_identity_from_the_verified_certificate(identity, cert, user):
    result = MtlsAuthenticator(identity).authenticate(with_cert(cert), CTX, 0.0)
    if user is None:
        assert result is None
    else:
        assert result == Principal(user_id=user, method="mtls")


def test_mtls_authenticator_is_named_mtls():
    assert MtlsAuthenticator().name == "mtls"
