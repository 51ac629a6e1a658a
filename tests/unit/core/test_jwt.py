"""JWT verification: the algorithm allow-list per key type, the claims, bearer extraction.

Real keys and real signatures throughout (cryptography + PyJWT); the clock is a number.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID
from handshake_factory import handshake, settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from wsguard.core.auth.jwt import (
    JWT_REASONS,
    MAX_TOKEN_LENGTH,
    JwtAuthenticator,
    JwtKeys,
    JwtVerifier,
)
from wsguard.core.decisions import Accept, Principal, Reject
from wsguard.core.handshake import HandshakeContext, HandshakePipeline

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"  # 32 bytes, the minimum

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(private_key: Any) -> bytes:
    return bytes(
        private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )


RSA_PEM = pem(RSA_KEY)


def jwk(private_key: Any, **extra: Any) -> dict[str, Any]:
    public_key = private_key.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {**data, **extra}


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims (alice, expiring in a minute), then varied; ``None`` drops a claim."""
    result: dict[str, Any] = {"sub": "alice", "exp": NOW + 60}
    result.update(overrides)
    return {k: v for k, v in result.items() if v is not None}


def token(key: Any = SECRET, alg: str = "HS256", kid: str | None = None, **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, signature: bytes = b"") -> str:
    """A token assembled by hand, signed by nobody (or with ``signature``)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode() if not isinstance(payload, bytes) else payload)
    return f"{head}.{body}.{b64(signature)}"


def hs256_forged(payload: Any, secret: bytes) -> str:
    """HS256 computed by hand: PyJWT itself refuses a PEM as an HMAC secret when signing."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def verifier(
    keys: JwtKeys | None = None,
    algorithms: tuple[str, ...] = ("HS256",),
    audience: str | None = None,
    issuer: str | None = None,
    leeway: float = 0.0,
) -> JwtVerifier:
    return JwtVerifier(keys or JwtKeys.from_secret(SECRET), algorithms, audience, issuer, leeway)


def rejected(result: Principal | Reject, reason: str) -> bool:
    assert result == Reject(401, "Unauthorized", reason), result
    return True


RSA_KEYS = JwtKeys.from_pem(RSA_PEM)

# ---------------------------------------------------------------- accepted tokens


def test_valid_hs256_token_gives_principal_with_claims():
    result = verifier().verify(
        token(roles=["admin", "ops"], channels=["chat:1"], exp=NOW + 60), NOW
    )
    assert result == Principal(
        "alice", "jwt", frozenset({"admin", "ops"}), frozenset({"chat:1"}), NOW + 60
    )


@pytest.mark.parametrize(
    ("private_key", "alg"),
    [
        pytest.param(RSA_KEY, "RS256", id="rs256"),
        pytest.param(RSA_KEY, "RS512", id="rs512"),
        pytest.param(RSA_KEY, "PS256", id="ps256"),
        pytest.param(EC_KEY, "ES256", id="es256"),
        pytest.param(EC384_KEY, "ES384", id="es384"),
        pytest.param(ED_KEY, "EdDSA", id="eddsa"),
    ],
)
def test_asymmetric_token_verifies_with_its_pem_public_key(private_key: Any, alg: str):
    v = verifier(JwtKeys.from_pem(pem(private_key)), (alg,))
    assert v.verify(token(private_key, alg), NOW) == Principal("alice", "jwt", expires_at=NOW + 60)


def test_hs512_token_verifies_with_a_64_byte_secret():
    secret = SECRET * 2
    v = verifier(JwtKeys.from_secret(secret), ("HS512",))
    assert isinstance(v.verify(token(secret, "HS512"), NOW), Principal)


def test_pem_key_verifies_tokens_whatever_kid_they_name():
    assert isinstance(
        verifier(RSA_KEYS, ("RS256",)).verify(token(RSA_KEY, "RS256", "k9"), NOW), Principal
    )


# ---------------------------------------------------------------- algorithm allow-list


def test_alg_none_token_is_refused():
    forged = raw_token({"alg": "none", "typ": "JWT"}, claims())
    assert rejected(verifier().verify(forged, NOW), "alg_not_allowed")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case_is_refused_by_every_key_type(alg: str):
    forged = raw_token({"alg": alg}, claims())
    for v in (verifier(), verifier(RSA_KEYS, ("RS256",))):
        assert rejected(v.verify(forged, NOW), "alg_not_allowed")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_cannot_be_configured(alg: str):
    with pytest.raises(ValueError, match="never allowed"):
        verifier(algorithms=("HS256", alg))


def test_hs256_signed_with_the_rsa_public_pem_is_refused_key_confusion():
    # The classic attack: the RSA public key is public, so anyone can use it as an HMAC
    # secret. Even a misconfigured allow-list naming HS256 must not let it verify.
    forged = hs256_forged(claims(sub="admin"), RSA_PEM)
    for algorithms in [("RS256",), ("RS256", "HS256")]:
        assert rejected(verifier(RSA_KEYS, algorithms).verify(forged, NOW), "alg_not_allowed")


def test_hs256_against_jwks_keys_is_refused_even_with_unknown_kid():
    keys = JwtKeys.from_jwks({"keys": [jwk(RSA_KEY, kid="a")]})
    forged = jwt.encode(claims(), SECRET, "HS256", headers={"kid": "zzz"})
    assert rejected(verifier(keys, ("RS256", "HS256")).verify(forged, NOW), "alg_not_allowed")


def test_rs256_token_against_an_hmac_secret_is_refused():
    rs = token(RSA_KEY, "RS256")
    for algorithms in [("HS256",), ("HS256", "RS256")]:
        assert rejected(verifier(algorithms=algorithms).verify(rs, NOW), "alg_not_allowed")


def test_algorithm_not_configured_is_refused_though_the_key_could_verify_it():
    assert rejected(
        verifier(RSA_KEYS, ("RS256",)).verify(token(RSA_KEY, "PS256"), NOW), "alg_not_allowed"
    )


def test_es256_token_against_a_p384_key_is_refused_curve_mismatch():
    keys = JwtKeys.from_jwks({"keys": [jwk(EC_KEY, kid="p256"), jwk(EC384_KEY, kid="p384")]})
    wrong_curve = token(EC_KEY, "ES256", "p384")
    assert rejected(verifier(keys, ("ES256", "ES384")).verify(wrong_curve, NOW), "alg_not_allowed")


def test_hs384_needs_a_48_byte_secret():
    keys = JwtKeys.from_secret(SECRET)
    assert keys.keys[0].algorithms == frozenset({"HS256"})
    v = verifier(keys, ("HS256", "HS384"))
    assert rejected(v.verify(token(SECRET + b"x" * 16, "HS384"), NOW), "alg_not_allowed")
    assert JwtKeys.from_secret(SECRET + b"x" * 16).keys[0].algorithms == frozenset(
        {"HS256", "HS384"}
    )


def test_jwk_alg_restricts_the_key_to_that_algorithm():
    keys = JwtKeys.from_jwks({"keys": [jwk(RSA_KEY, kid="a", alg="PS256")]})
    v = verifier(keys, ("RS256", "PS256"))
    assert isinstance(v.verify(token(RSA_KEY, "PS256", "a"), NOW), Principal)
    assert rejected(v.verify(token(RSA_KEY, "RS256", "a"), NOW), "alg_not_allowed")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"typ": "JWT"}, id="missing"),
        pytest.param({"alg": ["HS256"]}, id="list"),
        pytest.param({"alg": {"x": 1}}, id="object"),
        pytest.param({"alg": 256}, id="number"),
        pytest.param({"alg": "HS999"}, id="unknown"),
    ],
)
def test_header_without_a_usable_alg_is_refused(header: dict[str, Any]):
    assert rejected(
        verifier().verify(raw_token(header, claims(), b"x" * 32), NOW), "alg_not_allowed"
    )


# ---------------------------------------------------------------- keys and kid


def test_key_rotation_both_kids_verify_and_a_removed_kid_is_unknown():
    both = JwtKeys.from_jwks({"keys": [jwk(RSA_KEY, kid="old"), jwk(RSA_KEY_2, kid="new")]})
    old, new = token(RSA_KEY, "RS256", "old"), token(RSA_KEY_2, "RS256", "new")
    assert isinstance(verifier(both, ("RS256",)).verify(old, NOW), Principal)
    assert isinstance(verifier(both, ("RS256",)).verify(new, NOW), Principal)
    rotated = verifier(JwtKeys.from_jwks({"keys": [jwk(RSA_KEY_2, kid="new")]}), ("RS256",))
    assert rejected(rotated.verify(old, NOW), "unknown_kid")
    assert isinstance(rotated.verify(new, NOW), Principal)


def test_token_signed_by_one_key_but_naming_the_other_kid_has_a_bad_signature():
    both = JwtKeys.from_jwks({"keys": [jwk(RSA_KEY, kid="old"), jwk(RSA_KEY_2, kid="new")]})
    assert rejected(
        verifier(both, ("RS256",)).verify(token(RSA_KEY, "RS256", "new"), NOW), "bad_signature"
    )


def test_single_key_jwks_verifies_a_token_without_kid():
    keys = JwtKeys.from_jwks({"keys": [jwk(ED_KEY, kid="only")]})
    assert isinstance(verifier(keys, ("EdDSA",)).verify(token(ED_KEY, "EdDSA"), NOW), Principal)


def test_several_keys_and_no_kid_in_token_is_unknown_kid():
    both = JwtKeys.from_jwks({"keys": [jwk(RSA_KEY, kid="old"), jwk(RSA_KEY_2, kid="new")]})
    assert rejected(verifier(both, ("RS256",)).verify(token(RSA_KEY, "RS256"), NOW), "unknown_kid")


def test_single_key_jwks_refuses_another_kid():
    keys = JwtKeys.from_jwks({"keys": [jwk(ED_KEY, kid="only")]})
    assert rejected(
        verifier(keys, ("EdDSA",)).verify(token(ED_KEY, "EdDSA", "other"), NOW), "unknown_kid"
    )


def test_non_string_kid_is_malformed():
    forged = raw_token({"alg": "HS256", "kid": 7}, claims(), b"x" * 32)
    assert rejected(verifier().verify(forged, NOW), "malformed_token")


# ---------------------------------------------------------------- signature and shape


def test_tampered_payload_has_a_bad_signature():
    head, body, signature = token().split(".")
    middle = len(body) // 2
    flipped = body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :]
    assert rejected(verifier().verify(f"{head}.{flipped}.{signature}", NOW), "bad_signature")


def test_payload_rewritten_to_another_user_has_a_bad_signature():
    head, _, signature = token().split(".")
    body = b64(json.dumps(claims(sub="admin")).encode())
    assert rejected(verifier().verify(f"{head}.{body}.{signature}", NOW), "bad_signature")


def test_token_signed_with_another_secret_has_a_bad_signature():
    assert rejected(
        verifier().verify(token(b"another secret of 32 bytes!!!!!!"), NOW), "bad_signature"
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="one-segment"),
        pytest.param("a.b", id="two-segments"),
        pytest.param("!!!.!!!.!!!", id="not-base64"),
        pytest.param(b64(b"[1]") + ".e30.", id="header-array"),
        pytest.param(b64(b"not json") + ".e30.", id="header-not-json"),
        pytest.param("ey\u00e9.e30.", id="non-ascii"),
    ],
)
def test_garbage_token_is_malformed(value: str):
    assert rejected(verifier().verify(value, NOW), "malformed_token")


@pytest.mark.parametrize("value", [None, 42, b"bytes.token.here", ["a"]])
def test_non_string_token_from_a_first_message_is_malformed(value: Any):
    assert rejected(verifier().verify(value, NOW), "malformed_token")


def test_unsupported_critical_header_is_malformed():
    forged = jwt.encode(claims(), SECRET, "HS256", headers={"crit": ["exp"], "exp": 1})
    assert rejected(verifier().verify(forged, NOW), "malformed_token")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"alice"', id="string"),
    ],
)
def test_validly_signed_payload_that_is_not_a_claims_object_is_malformed(payload: bytes):
    signed = jwt.api_jws.encode(payload, SECRET, "HS256")
    assert rejected(verifier().verify(signed, NOW), "malformed_token")


def test_token_over_8_kib_is_malformed_before_parsing():
    big = token(pad="x" * MAX_TOKEN_LENGTH)
    assert len(big) > MAX_TOKEN_LENGTH
    assert rejected(verifier().verify(big, NOW), "malformed_token")


def test_token_length_limit_boundary():
    sizes = {len(token(pad="x" * n)): n for n in range(5980, 6200)}
    at_limit = token(pad="x" * sizes[MAX_TOKEN_LENGTH])
    over = token(pad="x" * min(n for size, n in sizes.items() if size > MAX_TOKEN_LENGTH))
    assert isinstance(verifier().verify(at_limit, NOW), Principal)
    assert rejected(verifier().verify(over, NOW), "malformed_token")


# ---------------------------------------------------------------- time claims


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"sub": "alice"}, id="absent"),
        pytest.param({"sub": "alice", "exp": None}, id="null"),
    ],
)
def test_token_without_exp_is_refused(payload: dict[str, Any]):
    assert rejected(verifier().verify(jwt.encode(payload, SECRET, "HS256"), NOW), "missing_exp")


def test_expired_token_is_refused():
    assert rejected(verifier().verify(token(exp=NOW - 1), NOW), "expired")


def test_token_is_expired_exactly_at_exp():
    assert rejected(verifier().verify(token(exp=NOW), NOW), "expired")


def test_expiry_leeway_boundary():
    v = verifier(leeway=5)
    expired_at_leeway = token(exp=NOW - 5)
    assert rejected(v.verify(expired_at_leeway, NOW), "expired")
    assert v.verify(token(exp=NOW - 4.5), NOW) == Principal("alice", "jwt", expires_at=NOW - 4.5)


def test_not_yet_valid_token_is_refused():
    assert rejected(verifier().verify(token(nbf=NOW + 1), NOW), "not_yet_valid")


def test_not_before_leeway_boundary():
    v = verifier(leeway=5)
    assert isinstance(v.verify(token(nbf=NOW + 5), NOW), Principal)
    assert rejected(v.verify(token(nbf=NOW + 5.5), NOW), "not_yet_valid")


def test_nbf_in_the_past_is_accepted():
    assert isinstance(verifier().verify(token(nbf=NOW - 10), NOW), Principal)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": "tomorrow"}, id="exp-string"),
        pytest.param({"exp": True}, id="exp-bool"),
        pytest.param({"exp": [NOW + 60]}, id="exp-list"),
        pytest.param({"exp": float("nan")}, id="exp-nan"),
        pytest.param({"exp": float("inf")}, id="exp-infinity"),
        pytest.param({"exp": 10**400}, id="exp-overflows-float"),
        pytest.param({"nbf": "yesterday"}, id="nbf-string"),
        pytest.param({"nbf": float("-inf")}, id="nbf-minus-infinity"),
        pytest.param({"roles": "admin"}, id="roles-string"),
        pytest.param({"roles": ["admin", 1]}, id="roles-number"),
        pytest.param({"roles": {"admin": True}}, id="roles-object"),
        pytest.param({"channels": "chat"}, id="channels-string"),
        pytest.param({"channels": [["chat"]]}, id="channels-nested"),
        pytest.param({"aud": 1}, id="aud-number"),
        pytest.param({"aud": ["api", 2]}, id="aud-list-number"),
    ],
)
def test_claim_of_the_wrong_type_is_refused(overrides: dict[str, Any]):
    forged = token(**{"aud": "api", **overrides})
    assert rejected(verifier(audience="api").verify(forged, NOW), "bad_claims")


# ---------------------------------------------------------------- audience, issuer, subject


def test_wrong_audience_is_refused():
    assert rejected(verifier(audience="api").verify(token(aud="other"), NOW), "audience")


def test_audience_list_containing_ours_is_accepted():
    assert isinstance(verifier(audience="api").verify(token(aud=["other", "api"]), NOW), Principal)


def test_audience_list_without_ours_is_refused():
    assert rejected(verifier(audience="api").verify(token(aud=["other", "apis"]), NOW), "audience")


def test_configured_audience_missing_from_token_is_refused():
    assert rejected(verifier(audience="api").verify(token(), NOW), "audience")


def test_token_with_audience_is_refused_when_none_is_configured():
    # RFC 7519 §4.1.3: a recipient that is not named in a present aud MUST reject.
    assert rejected(verifier().verify(token(aud="api"), NOW), "audience")


def test_wrong_issuer_is_refused():
    v = verifier(issuer="https://idp.example.com")
    assert rejected(v.verify(token(iss="https://evil.example.com"), NOW), "issuer")
    assert rejected(v.verify(token(), NOW), "issuer")
    assert isinstance(v.verify(token(iss="https://idp.example.com"), NOW), Principal)


def test_issuer_is_not_checked_when_not_configured():
    assert isinstance(verifier().verify(token(iss="anyone"), NOW), Principal)


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(42, id="number"),
        pytest.param(["alice"], id="list"),
        pytest.param("a" * 256, id="256-chars"),
        pytest.param("alice\nlevel=admin", id="newline"),
        pytest.param("alice\x00", id="nul"),
    ],
)
def test_token_without_a_valid_subject_is_refused(sub: Any):
    assert rejected(verifier().verify(token(sub=sub), NOW), "missing_subject")


def test_subject_of_255_chars_is_accepted():
    result = verifier().verify(token(sub="é" * 255), NOW)
    assert isinstance(result, Principal)
    assert result.user_id == "é" * 255


def test_every_reason_has_status_401_and_the_generic_phrase():
    assert {
        "malformed_token",
        "alg_not_allowed",
        "unknown_kid",
        "bad_signature",
        "missing_exp",
        "expired",
        "not_yet_valid",
        "audience",
        "issuer",
        "missing_subject",
        "bad_claims",
    } == JWT_REASONS


# ---------------------------------------------------------------- verifier configuration


def test_unknown_algorithm_cannot_be_configured():
    with pytest.raises(ValueError, match="unknown JWT algorithm 'HS257'"):
        verifier(algorithms=("HS257",))


def test_algorithms_no_key_can_verify_are_a_configuration_error():
    with pytest.raises(ValueError, match="RS256"):
        verifier(algorithms=("RS256",))
    with pytest.raises(ValueError, match="HS256"):
        verifier(RSA_KEYS, ("HS256",))


@pytest.mark.parametrize("leeway", [-1.0, float("nan"), float("inf")])
def test_bad_leeway_is_a_configuration_error(leeway: float):
    with pytest.raises(ValueError, match="leeway"):
        verifier(leeway=leeway)


# ---------------------------------------------------------------- JwtKeys


def test_secret_shorter_than_32_bytes_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"31 bytes long; at least 32 .* brute-forced"):
        JwtKeys.from_secret(SECRET[:31])


def test_public_key_pem_as_hmac_secret_is_refused():
    with pytest.raises(ValueError, match="public key"):
        JwtKeys.from_secret(RSA_PEM)


def test_secret_is_not_shown_in_the_keys_repr():
    assert SECRET.decode() not in repr(JwtKeys.from_secret(SECRET))


def _certificate(private_key: Any) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(private_key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def test_pem_certificate_gives_its_public_key():
    v = verifier(JwtKeys.from_pem(_certificate(EC_KEY)), ("ES256",))
    assert isinstance(v.verify(token(EC_KEY, "ES256"), NOW), Principal)


def test_pkcs1_rsa_public_key_pem_is_accepted():
    pkcs1 = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.PKCS1)
    assert JwtKeys.from_pem(pkcs1).keys[0].key_type == "RSA"


def test_key_types_and_their_algorithms():
    assert JwtKeys.from_pem(RSA_PEM).keys[0].algorithms == frozenset(
        {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    )
    assert JwtKeys.from_pem(pem(EC384_KEY)).keys[0].algorithms == frozenset({"ES384"})
    p521 = ec.generate_private_key(ec.SECP521R1())
    assert JwtKeys.from_pem(pem(p521)).keys[0].algorithms == frozenset({"ES512"})
    k1 = ec.generate_private_key(ec.SECP256K1())
    assert JwtKeys.from_pem(pem(k1)).keys[0].algorithms == frozenset({"ES256K"})
    ed448_key = ed448.Ed448PrivateKey.generate()
    okp = JwtKeys.from_pem(pem(ed448_key)).keys[0]
    assert (okp.key_type, okp.algorithms) == ("OKP", frozenset({"EdDSA"}))


@pytest.mark.parametrize(
    ("material", "message"),
    [
        pytest.param(b"", "found 0", id="empty"),
        pytest.param(RSA_PEM + pem(EC_KEY), "found 2", id="two-keys"),
        pytest.param(
            RSA_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
            "private key",
            id="private-key",
        ),
        pytest.param(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a valid PEM",
            id="bad-base64",
        ),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not a valid PEM",
            id="bad-certificate",
        ),
        pytest.param(
            pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
            "1024 bits: at least 2048",
            id="rsa-1024",
        ),
        pytest.param(pem(x25519.X25519PrivateKey.generate()), "unsupported key type", id="x25519"),
        pytest.param(
            pem(ec.generate_private_key(ec.BrainpoolP256R1())), "unsupported EC curve", id="curve"
        ),
    ],
)
def test_unusable_pem_is_refused(material: bytes, message: str):
    with pytest.raises(ValueError, match=message):
        JwtKeys.from_pem(material)


def test_jwks_skips_encryption_keys():
    keys = JwtKeys.from_jwks(
        {"keys": [jwk(RSA_KEY, kid="enc", use="enc"), jwk(EC_KEY, kid="sig", use="sig")]}
    )
    assert [(k.kid, k.key_type) for k in keys.keys] == [("sig", "EC")]


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        pytest.param({}, "non-empty", id="no-keys"),
        pytest.param({"keys": []}, "non-empty", id="empty-keys"),
        pytest.param({"keys": {"kty": "RSA"}}, "non-empty", id="keys-object"),
        pytest.param([jwk(EC_KEY)], "non-empty", id="top-level-list"),
        pytest.param({"keys": ["x"]}, r"keys\[0\] is not an object", id="entry-string"),
        pytest.param({"keys": [jwk(EC_KEY, use="enc")]}, "no signature keys", id="only-enc"),
        pytest.param({"keys": [{"kty": "oct", "k": b64(SECRET)}]}, "symmetric", id="oct-key"),
        pytest.param({"keys": [jwk(EC_KEY, d=b64(b"\x01" * 32))]}, "private key", id="private-key"),
        pytest.param({"keys": [jwk(EC_KEY, kid=7)]}, "kid must be a string", id="kid-number"),
        pytest.param({"keys": [jwk(EC_KEY, alg="none")]}, "unsupported alg", id="alg-none"),
        pytest.param({"keys": [jwk(EC_KEY, alg=["ES256"])]}, "unsupported alg", id="alg-list"),
        pytest.param(
            {"keys": [jwk(EC384_KEY, alg="ES256")]}, "ES256 cannot be used", id="alg-curve"
        ),
        pytest.param({"keys": [jwk(RSA_KEY, alg="ES256")]}, "not a usable", id="alg-kty"),
        pytest.param({"keys": [{"kty": "RSA", "e": "AQAB"}]}, "not a usable", id="no-modulus"),
        pytest.param({"keys": [{"kty": "XYZ"}]}, "not a usable", id="unknown-kty"),
        pytest.param(
            {"keys": [jwk(RSA_KEY, kid="a"), jwk(RSA_KEY_2, kid="a")]}, "share a kid", id="dup-kid"
        ),
        pytest.param(
            {"keys": [jwk(RSA_KEY, kid="a"), jwk(RSA_KEY_2)]}, "needs a kid", id="missing-kid"
        ),
    ],
)
def test_unusable_jwks_is_refused(jwks: Any, message: str):
    with pytest.raises(ValueError, match=message):
        JwtKeys.from_jwks(jwks)


def test_empty_key_set_is_refused():
    with pytest.raises(ValueError, match="no verification keys"):
        JwtKeys(())


# ---------------------------------------------------------------- JwtAuthenticator

CTX = HandshakeContext("127.0.0.1", "http", "127.0.0.1", 8080, None)
AUTH = JwtAuthenticator(verifier())


def test_authenticator_is_named_jwt():
    assert AUTH.name == "jwt"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_token_authenticates(scheme: str):
    request = handshake(extra=[("Authorization", f"{scheme} {token()}")])
    assert AUTH.authenticate(request, CTX, NOW) == Principal("alice", "jwt", expires_at=NOW + 60)


def test_no_authorization_header_is_not_a_jwt_credential():
    assert AUTH.authenticate(handshake(), CTX, NOW) is None


def test_token_in_the_query_string_is_ignored():
    assert AUTH.authenticate(handshake(target=f"/ws?token={token()}"), CTX, NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic YWxpY2U6cGFzc3dvcmQ=", id="basic"),
        pytest.param("Bearerx abc", id="scheme-prefix"),
        pytest.param("Be\u0430rer abc", id="cyrillic-a"),
        pytest.param("", id="empty"),
    ],
)
def test_other_authorization_schemes_are_not_a_jwt_credential(value: str):
    assert AUTH.authenticate(handshake(extra=[("Authorization", value)]), CTX, NOW) is None


def test_two_authorization_fields_are_refused():
    request = handshake(
        extra=[("Authorization", f"Bearer {token()}"), ("Authorization", "Basic eDp5")]
    )
    assert AUTH.authenticate(request, CTX, NOW) == Reject(400, "Bad Request", "duplicate_header")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("Bearer", "malformed_token", id="no-token"),
        pytest.param("Bearer    ", "malformed_token", id="blank-token"),
        pytest.param(f"Bearer {token(exp=NOW - 60)}", "expired", id="expired"),
        pytest.param(f"Bearer {token()}, Bearer {token()}", "malformed_token", id="two-tokens"),
    ],
)
def test_bad_bearer_token_is_refused(value: str, reason: str):
    result = AUTH.authenticate(handshake(extra=[("Authorization", value)]), CTX, NOW)
    assert rejected(result, reason)


def test_pipeline_accepts_a_bearer_token_and_refuses_a_bad_one_with_401():
    pipeline = HandshakePipeline(
        settings(auth={"required": True, "methods": ("jwt",)}),
        loopback_bound=True,
        authenticators=[AUTH],
    )
    good = pipeline.decide(handshake(extra=[("Authorization", f"Bearer {token()}")]), NOW)
    assert isinstance(good, Accept)
    assert good.principal == Principal("alice", "jwt", expires_at=NOW + 60)
    bad = pipeline.decide(handshake(extra=[("Authorization", f"Bearer {token(sub='')}")]), NOW)
    assert bad == Reject(401, "Unauthorized", "missing_subject")


# ---------------------------------------------------------------- properties

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CLAIMS = st.dictionaries(
    st.sampled_from(["sub", "exp", "nbf", "aud", "iss", "roles", "channels", "iat", "jti"]),
    JSON | st.floats(NOW - 100, NOW + 100),
    max_size=9,
)
SIGNERS = [
    (SECRET, "HS256", JwtKeys.from_secret(SECRET)),
    (RSA_KEY, "RS256", RSA_KEYS),
    (EC_KEY, "ES256", JwtKeys.from_pem(pem(EC_KEY))),
    (ED_KEY, "EdDSA", JwtKeys.from_pem(pem(ED_KEY))),
]


def _documented(result: Principal | Reject, value: str) -> None:
    if isinstance(result, Reject):
        assert result.status == 401
        assert result.public_reason == "Unauthorized"
        assert result.audit_reason in JWT_REASONS
        # Short strings (a digit, "Un") occur in any repr by chance.
        assert len(value) < 8 or value not in repr(result)
    else:
        assert isinstance(result, Principal)
        assert result.method == "jwt"


@given(
    st.text(max_size=300)
    | st.from_regex(r"[A-Za-z0-9_\-]{0,80}(\.[A-Za-z0-9_\-=]{0,80}){0,4}", fullmatch=True)
)
def test_any_text_is_a_principal_or_a_documented_reject(value: str):
    _documented(verifier(audience="api", issuer="idp", leeway=5).verify(value, NOW), value)


@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64"]), JSON, max_size=5),
    payload=st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()),
    signature=st.binary(max_size=600),
)
def test_any_header_payload_and_signature_is_a_documented_reject(
    header: Any, payload: bytes, signature: bytes
):
    value = f"{b64(json.dumps(header).encode())}.{b64(payload)}.{b64(signature)}"
    for _, alg, keys in SIGNERS:
        _documented(verifier(keys, (alg,)).verify(value, NOW), value)


@hypothesis_settings(max_examples=50, deadline=None)
@given(payload=CLAIMS, signer=st.sampled_from(SIGNERS))
def test_any_validly_signed_claims_are_a_principal_or_a_documented_reject(
    payload: dict[str, Any], signer: Any
):
    key, alg, keys = signer
    # api_jws: jwt.encode would refuse some claim types itself (a non-string iss).
    signed = jwt.api_jws.encode(json.dumps(payload).encode(), key, algorithm=alg)
    result = verifier(keys, (alg,), audience="api", leeway=5).verify(signed, NOW)
    _documented(result, signed)
    if isinstance(result, Principal):
        assert result.user_id == payload["sub"]
        assert result.expires_at is not None
        assert result.expires_at + 5 > NOW


@given(
    st.dictionaries(
        st.sampled_from(["keys", "x"]),
        st.lists(
            st.dictionaries(
                st.sampled_from(["kty", "crv", "x", "y", "n", "e", "kid", "alg", "use", "d", "k"]),
                JSON
                | st.sampled_from(
                    ["RSA", "EC", "OKP", "oct", "P-256", "Ed25519", "AQAB", "sig", "RS256"]
                ),
            ),
            max_size=3,
        )
        | JSON,
    )
)
def test_any_jwks_is_keys_or_a_value_error(jwks: dict[str, Any]):
    try:
        keys = JwtKeys.from_jwks(jwks)
    except ValueError:
        return
    assert keys.keys


def test_swapping_the_verifier_changes_the_keys_of_a_live_authenticator():
    auth = JwtAuthenticator(verifier())
    other_secret = b"z" * 32
    request = handshake(extra=[("Authorization", f"Bearer {token(key=other_secret)}")])
    assert rejected(auth.authenticate(request, CTX, NOW), "bad_signature")  # type: ignore[arg-type]
    auth.verifier = verifier(JwtKeys.from_secret(other_secret))
    assert auth.verifier.verify(token(key=other_secret), NOW) == Principal(
        "alice", "jwt", expires_at=NOW + 60
    )
    assert auth.authenticate(request, CTX, NOW) == Principal("alice", "jwt", expires_at=NOW + 60)


def test_iat_claim_becomes_the_principals_issue_time():
    result = verifier().verify(token(iat=NOW - 10), NOW)
    assert isinstance(result, Principal)
    assert result.issued_at == NOW - 10
