"""JWT verification parses each token once and checks each HMAC secret once, and still decides
exactly as PyJWT's two-call sequence (``get_unverified_header`` then ``decode``) did.

The reference below is that sequence, verbatim; every reject reason, in every order of checks,
must come out the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS

from wsguard.core.auth import jwt as wsjwt
from wsguard.core.auth.jwt import MAX_TOKEN_LENGTH, JwtKey, JwtKeys, JwtVerifier
from wsguard.core.decisions import Principal, Reject

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"
OTHER_SECRET = b"z" * 32
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())

# The options verify() used to hand jwt.decode.
_OLD_OPTIONS: Any = {
    "verify_signature": True, "enforce_minimum_key_length": True, "require": [],
    "verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False,
    "verify_iss": False, "verify_sub": False, "verify_jti": False,
}  # fmt: skip


def _pem(private_key: Any) -> bytes:
    return bytes(
        private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )


def reference(verifier: JwtVerifier, token: Any, now: float) -> Principal | Reject:
    """``JwtVerifier.verify`` as it was: PyJWT's public two-call API."""
    malformed = Reject(401, "Unauthorized", "malformed_token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return malformed
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return malformed
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in verifier._algorithms:
        return Reject(401, "Unauthorized", "alg_not_allowed")
    key = verifier._keys.select(header.get("kid"))
    if key is None:
        return Reject(401, "Unauthorized", "unknown_kid")
    if alg not in key.algorithms:
        return Reject(401, "Unauthorized", "alg_not_allowed")
    material = bytes(key.material) if isinstance(key.material, bytes) else key.material
    try:
        claims = jwt.decode(token, material, algorithms=[alg], options=_OLD_OPTIONS)
    except jwt.InvalidSignatureError:
        return Reject(401, "Unauthorized", "bad_signature")
    except jwt.PyJWTError:
        return malformed
    return verifier._principal(claims, now)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: Any, payload: bytes, secret: bytes = SECRET) -> str:
    """A token signed by hand: any header, any payload bytes (valid JSON or not)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


VERIFIERS = [
    JwtVerifier(JwtKeys.from_secret(SECRET), ("HS256",), "api", "idp", 5),
    JwtVerifier(JwtKeys.from_secret(SECRET * 2), ("HS256", "HS384", "HS512")),
    JwtVerifier(JwtKeys.from_pem(_pem(RSA_KEY)), ("RS256", "PS256")),
    JwtVerifier(
        JwtKeys.from_jwks(
            {
                "keys": [
                    {**jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True),
                     "kid": "e1"},
                    {**jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True),
                     "kid": "r1"},
                ]
            }
        ),
        ("ES256", "RS256"),
    ),
]  # fmt: skip

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
HEADERS = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "crit", "b64"]),
    JSON
    | st.sampled_from(["HS256", "HS384", "RS256", "ES256", "none", "NONE", "e1", "r1"])
    | st.just(["b64"])
    | st.just(False),
    max_size=5,
)
PAYLOADS = st.binary(max_size=40) | st.dictionaries(
    st.sampled_from(["sub", "exp", "nbf", "aud", "iss", "roles", "iat"]),
    JSON | st.sampled_from(["alice", "api", "idp"]) | st.floats(NOW - 100, NOW + 100),
).map(lambda claims: json.dumps(claims).encode())


def _same(token: Any) -> None:
    for verifier in VERIFIERS:
        assert verifier.verify(token, NOW) == reference(verifier, token, NOW), token


@hypothesis_settings(max_examples=300, deadline=None)
@given(header=HEADERS, payload=PAYLOADS, secret=st.sampled_from([SECRET, OTHER_SECRET]))
def test_signed_tokens_decide_as_pyjwt_two_calls_did(header: Any, payload: bytes, secret: bytes):
    _same(hs256(header, payload, secret))


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=120)
    | st.from_regex(r"[A-Za-z0-9_\-]{0,40}(\.[A-Za-z0-9_\-=]{0,40}){0,4}", fullmatch=True)
    | st.binary(max_size=20)
    | st.none()
)
def test_garbage_decides_as_pyjwt_two_calls_did(value: Any):
    _same(value)


@pytest.mark.parametrize(
    "token",
    [
        # b64=false: refused by the first parse, the decode, or the alg check, as before.
        hs256({"alg": "HS256", "b64": False, "crit": ["b64"]}, b""),
        hs256({"alg": "none", "b64": False}, b""),
        hs256({"alg": "HS256", "b64": False}, b'{"sub":"alice"}'),
        hs256({"alg": "HS256", "crit": ["exp"]}, b'{"sub":"alice"}'),
        # A bad signature is found before the payload is read, as before.
        hs256({"alg": "HS256"}, b"not json", OTHER_SECRET),
        hs256({"alg": "HS256"}, b"[1]", SECRET),
        hs256({"alg": "HS256", "kid": 7}, b"{}"),
        jwt.encode({"sub": "alice", "exp": NOW + 60}, RSA_KEY, algorithm="RS256"),
        jwt.encode(
            {"sub": "a", "exp": NOW + 60}, RSA_KEY, algorithm="RS256", headers={"kid": "r1"}
        ),
        jwt.encode({"sub": "a", "exp": NOW + 60}, EC_KEY, algorithm="ES256", headers={"kid": "e1"}),
        jwt.encode({"sub": "a", "exp": NOW + 60}, EC_KEY, algorithm="ES256", headers={"kid": "r1"}),
    ],
)
def test_edge_tokens_decide_as_pyjwt_two_calls_did(token: str):
    _same(token)


def test_each_token_is_parsed_once(monkeypatch: pytest.MonkeyPatch):
    calls: list[object] = []
    load = PyJWS._load

    def counting(self: PyJWS, token: str | bytes) -> Any:
        calls.append(token)
        return load(self, token)

    monkeypatch.setattr(PyJWS, "_load", counting)
    verifier = VERIFIERS[0]
    token = jwt.encode({"sub": "alice", "exp": NOW + 60, "aud": "api", "iss": "idp"}, SECRET)
    assert isinstance(verifier.verify(token, NOW), Principal)
    assert calls == [token]


def test_a_remembered_parse_is_only_reused_for_the_same_token():
    verifier = VERIFIERS[0]
    refused = jwt.encode({"sub": "mallory", "exp": NOW + 60}, SECRET * 2, algorithm="HS384")
    good = jwt.encode({"sub": "alice", "exp": NOW + 60, "aud": "api", "iss": "idp"}, SECRET)
    # The refused token's parse is left behind (no decode followed it) and must not leak.
    assert verifier.verify(refused, NOW) == Reject(401, "Unauthorized", "alg_not_allowed")
    result = verifier.verify(good, NOW)
    assert isinstance(result, Principal)
    assert result.user_id == "alice"
    # Interleaved directly: a header read of one token, then the decode of another.
    wsjwt._JWS.get_unverified_header(refused)
    decoded = wsjwt._JWS.decode_complete(good, wsjwt._CheckedSecret(SECRET), algorithms=["HS256"])
    assert json.loads(decoded["payload"])["sub"] == "alice"
    wsjwt._JWS.get_unverified_header(good)
    wrong_key = wsjwt._CheckedSecret(OTHER_SECRET)
    with pytest.raises(jwt.InvalidSignatureError):
        wsjwt._JWS.decode_complete(good, wrong_key, algorithms=["HS256"])


def test_from_secret_checks_the_secret_once_and_hand_built_keys_are_still_checked():
    key = JwtKeys.from_secret(SECRET).keys[0]
    assert type(key.material) is wsjwt._CheckedSecret
    assert key.material == SECRET
    hs = wsjwt._HmacAlgorithm(HMACAlgorithm.SHA256)
    assert hs.prepare_key(key.material) is key.material
    # Anything else still goes through PyJWT's checks: a public key is no HMAC secret.
    with pytest.raises(jwt.InvalidKeyError):
        hs.prepare_key(_pem(RSA_KEY))
    raw = JwtVerifier(JwtKeys((JwtKey(SECRET, "oct", frozenset({"HS256"})),)), ("HS256",))
    token = jwt.encode({"sub": "alice", "exp": NOW + 60}, SECRET)
    assert raw.verify(token, NOW) == Principal("alice", "jwt", expires_at=NOW + 60)
    pem_keyed = JwtVerifier(
        JwtKeys((JwtKey(_pem(RSA_KEY), "oct", frozenset({"HS256"})),)), ("HS256",)
    )
    forged = hs256({"alg": "HS256"}, b'{"sub":"alice","exp":1800000000}', _pem(RSA_KEY))
    assert pem_keyed.verify(forged, NOW) == Reject(401, "Unauthorized", "malformed_token")


def test_a_short_hand_built_secret_is_still_refused_by_the_key_length_check():
    short = JwtVerifier(JwtKeys((JwtKey(b"k" * 16, "oct", frozenset({"HS256"})),)), ("HS256",))
    token = hs256({"alg": "HS256"}, b'{"sub":"alice","exp":1800000000}', b"k" * 16)
    assert short.verify(token, NOW) == Reject(401, "Unauthorized", "malformed_token")


# ---------------------------------------------------------------- the same results, in C calls

SEGMENT_BYTES = st.binary(max_size=48) | st.text(
    alphabet="ABCabcxyz019-_=+/!. \n\x00é", max_size=48
).map(lambda text: text.encode())


def _outcome(decode: Any, segment: bytes) -> bytes | str:
    try:
        return decode(segment, "payload")
    except jwt.DecodeError as exc:
        return f"DecodeError: {exc}"


@hypothesis_settings(max_examples=1000, deadline=None)
@given(SEGMENT_BYTES)
def test_segments_decode_or_fail_exactly_as_pyjwt_decodes_them(segment: bytes):
    assert _outcome(wsjwt._decode_segment, segment) == _outcome(
        PyJWS._decode_base64url_segment, segment
    )


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        (b"YWJj", b"abc"),
        (b"YWI", b"ab"),
        (b"YWI=", b"ab"),  # padding some issuers send (AWS ALB)
        (b"YQ==", b"a"),
        (b"_-8", b"\xff\xef"),
        (b"", b""),
        (b"YQ===", "DecodeError: Invalid payload padding"),  # three '='
        (b"YWI==", "DecodeError: Invalid payload padding"),  # padded to a non-multiple of 4
        (b"YWJjZ", "DecodeError: Invalid payload padding"),  # one character past a multiple
        (b"YR", "DecodeError: Invalid payload padding"),  # stray bits: not the canonical "YQ"
        (b"YW+j", "DecodeError: Invalid payload padding"),  # standard base64, not base64url
        (b"YW j", "DecodeError: Invalid payload padding"),
        (b"Y=Q=", "DecodeError: Invalid payload padding"),  # '=' inside
    ],
)
def test_segment_cases(segment: bytes, expected: bytes | str):
    assert _outcome(wsjwt._decode_segment, segment) == expected
    assert _outcome(PyJWS._decode_base64url_segment, segment) == expected


def test_tokens_with_padded_or_non_canonical_segments_decide_as_pyjwt_did():
    token = jwt.encode({"sub": "alice", "exp": NOW + 60, "aud": "api", "iss": "idp"}, SECRET)
    head, body, signature = token.split(".")
    padded = ".".join(part + "=" * (-len(part) % 4) for part in (head, body, signature))
    # Padding the signature leaves the signed input as it was: still alice's token.
    padded_signature = f"{head}.{body}.{signature}="
    assert padded != token
    for candidate in (padded, padded_signature, f"{head}.{body}A.{signature}"):
        _same(candidate)
    assert VERIFIERS[0].verify(padded_signature, NOW) == Principal(
        "alice", "jwt", expires_at=NOW + 60
    )
    assert VERIFIERS[0].verify(padded, NOW) == Reject(401, "Unauthorized", "bad_signature")


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    key=st.binary(max_size=80),
    message=st.binary(max_size=200),
    alg=st.sampled_from([HMACAlgorithm.SHA256, HMACAlgorithm.SHA384, HMACAlgorithm.SHA512]),
)
def test_hmac_sign_verify_and_key_length_answer_as_pyjwt(key: bytes, message: bytes, alg: Any):
    ours, theirs = wsjwt._HmacAlgorithm(alg), HMACAlgorithm(alg)
    signature = theirs.sign(message, key)
    assert ours.sign(message, key) == signature
    assert ours.verify(message, key, signature) is True
    assert ours.verify(message, key, signature[:-1] + bytes([signature[-1] ^ 1])) is False
    assert ours.check_key_length(key) == theirs.check_key_length(key)
