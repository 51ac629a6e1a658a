"""JWT bearer tokens: verification keys, the algorithm allow-list and the claim checks.

Performs no I/O; reads no clock: key material arrives already read (``wsguard.auth_keys``) and
time as ``now``. PyJWT checks the signature only; the claims are checked here, since PyJWT would
read the wall clock. Per RFC 8725 §3.1, ``alg`` must be allowed for the key's type before the
key is used: never ``none``, HMAC secrets ``HS*``, RSA ``RS*``/``PS*``, EC the ``ES*`` of their
curve, OKP ``EdDSA`` (so an HS256 token "signed" with the public RSA key is refused). ``exp``
and ``sub`` are required. Every bad token is a 401 ``Reject`` with a reason in ``JWT_REASONS``
and no token text; nothing raises on bad input.
"""

from __future__ import annotations

import binascii
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.types import SigOptions

from wsguard.core.decisions import Principal, Reject
from wsguard.core.handshake import HandshakeContext
from wsguard.core.upgrade import UpgradeRequest

__all__ = [
    "JWT_REASONS", "MAX_TOKEN_LENGTH", "MIN_SECRET_BYTES", "JwtAuthenticator", "JwtKey", "JwtKeys",
    "JwtVerifier", "KeyType",
]  # fmt: skip

JWT_REASONS: Final = frozenset({
    "malformed_token", "alg_not_allowed", "unknown_kid", "bad_signature", "missing_exp",
    "expired", "not_yet_valid", "audience", "issuer", "missing_subject", "bad_claims",
})  # fmt: skip
"""Every ``audit_reason`` a JWT ``Reject`` carries (all with status 401)."""

# Tokens are a few hundred bytes; the cap bounds the parsing an unauthenticated peer causes.
MAX_TOKEN_LENGTH: Final = 8192
# RFC 7518 §3.2: "A key of the same size as the hash output (for instance, 256 bits for
# "HS256") or larger MUST be used". A shorter secret can be brute-forced offline from any token.
MIN_SECRET_BYTES: Final = 32
_MIN_RSA_BITS: Final = 2048  # NIST SP 800-131A: shorter RSA keys no longer protect signatures

KeyType = Literal["oct", "RSA", "EC", "OKP"]
PublicKey: TypeAlias = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey

_HMAC_MIN_BYTES: Final[Mapping[str, int]] = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# RFC 7518 §3.4 ties each ES algorithm to one curve; RFC 8812 §3.2 adds ES256K.
_EC_ALGORITHMS: Final[Mapping[str, str]] = {
    "secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K",
}  # fmt: skip
_KNOWN_ALGORITHMS: Final = frozenset(
    {*_HMAC_MIN_BYTES, *_RSA_ALGORITHMS, *_EC_ALGORITHMS.values(), "EdDSA"}
)

# PyJWS checks the signature only: the claims are checked here (PyJWT would read the clock).
_SIGNATURE_ONLY: Final[SigOptions] = {"verify_signature": True, "enforce_minimum_key_length": True}

_REJECTS: Final = {reason: Reject(401, "Unauthorized", reason) for reason in JWT_REASONS}
_DUPLICATE_AUTHORIZATION: Final = Reject(400, "Bad Request", "duplicate_header")


class _CheckedSecret(bytes):
    """An HMAC secret that already passed ``HMACAlgorithm.prepare_key`` (``JwtKeys.from_secret``).

    That check tries PEM, SSH, DER and JSON parses of the secret, a few microseconds on every
    token; the secret never changes, so it is checked once.
    """

    __slots__ = ()


class _HmacAlgorithm(HMACAlgorithm):
    """``HMACAlgorithm`` with the same results, for less work per token.

    - ``prepare_key`` skips re-checking a ``_CheckedSecret``; any other key is checked.
    - ``check_key_length`` reads the digest size fixed at construction; PyJWT builds a hash
      object on every call to read it. A short key gets PyJWT's own message.
    - ``sign`` is OpenSSL's one-shot ``hmac.digest``, without an ``hmac.HMAC`` object per
      token; ``verify`` (PyJWT's: ``compare_digest`` against ``sign``) is unchanged.
    """

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        digest = hash_alg()
        self._digest_name: str = digest.name
        self._min_key_length: int = digest.digest_size

    def prepare_key(self, key: str | bytes) -> bytes:
        if type(key) is _CheckedSecret:
            return key
        return super().prepare_key(key)

    def check_key_length(self, key: bytes) -> str | None:
        if len(key) >= self._min_key_length:
            return None
        return super().check_key_length(key)

    def sign(self, msg: bytes, key: bytes) -> bytes:
        return hmac.digest(key, msg, self._digest_name)


_BASE64URL: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def _decode_segment(segment: bytes, name: str) -> bytes:
    """PyJWT's ``PyJWS._decode_base64url_segment``, with the same rules and results, in C calls.

    PyJWT (2.15) tests each byte of a segment against the alphabet in a Python generator; here
    ``bytes.translate`` deletes the alphabet and anything left over is refused. The rules: at
    most two ``=`` of padding, and only on a segment whose length is a multiple of 4; no byte
    outside the base64url alphabet; not one character past a multiple of 4; and the canonical
    encoding (no stray bits in the last character). Every refusal is PyJWT's ``DecodeError``
    with its message.
    """
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if (
        padding > 2
        or (padding and len(segment) % 4)
        or len(stripped) % 4 == 1
        or stripped.translate(None, _BASE64URL)
    ):
        raise jwt.DecodeError(f"Invalid {name} padding")
    padded = stripped.translate(_FROM_URLSAFE) + b"=" * (-len(stripped) % 4)
    try:
        decoded = binascii.a2b_base64(padded)
    except binascii.Error as err:  # pragma: no cover - the checks above rule it out
        raise jwt.DecodeError(f"Invalid {name} padding") from err
    if binascii.b2a_base64(decoded, newline=False).translate(_TO_URLSAFE).rstrip(b"=") != stripped:
        raise jwt.DecodeError(f"Invalid {name} padding")
    return decoded


class _Jws(PyJWS):
    """PyJWS that parses a token once when its header is read and the token is then decoded.

    ``verify`` must read the unverified header (to allow-list ``alg`` and pick the key by
    ``kid``) before it decodes; plain PyJWT parses the whole token (three base64 segments and
    the header JSON) for each of the two calls. Here the second parse of the same token reuses
    the first one's result, so every check still runs, in the same order, on the same values.
    ``_load`` is a pure function of the token, so a reused result is always the one PyJWT
    would compute; if PyJWT stops calling ``_load``, tokens are simply parsed twice again.
    Its segments are decoded by ``_decode_segment`` (the same rules, in C calls); if PyJWT
    stops calling ``_decode_base64url_segment``, its own decoding runs.
    """

    _decode_base64url_segment = staticmethod(_decode_segment)

    def __init__(self) -> None:
        super().__init__(options=_SIGNATURE_ONLY)
        # (token, what _load returned for it); one entry, consumed by the decode that follows.
        self._last: tuple[str | bytes, tuple[bytes, bytes, dict[str, Any], bytes]] | None = None
        for name, hash_alg in (
            ("HS256", HMACAlgorithm.SHA256),
            ("HS384", HMACAlgorithm.SHA384),
            ("HS512", HMACAlgorithm.SHA512),
        ):
            self.unregister_algorithm(name)
            self.register_algorithm(name, _HmacAlgorithm(hash_alg))

    def _load(self, jwt: str | bytes) -> tuple[bytes, bytes, dict[str, Any], bytes]:
        last = self._last
        # Compared by type too: a str token never matches a bytes one.
        if last is not None and type(last[0]) is type(jwt) and last[0] == jwt:
            self._last = None
            return last[1]
        loaded = super()._load(jwt)
        self._last = (jwt, loaded)
        return loaded


_JWS: Final = _Jws()


def _claims(payload: bytes) -> dict[str, Any] | None:
    """The verified payload as a claims object, as ``jwt.decode`` reads it; ``None`` when it is
    not JSON or not an object (PyJWT's ``DecodeError``)."""
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


@dataclass(frozen=True, slots=True)
class JwtKey:
    """One verification key (build it through ``JwtKeys``).

    Attributes:
        material: the HMAC secret, or the ``cryptography`` public key.
        key_type: the JWK key type (``oct`` for an HMAC secret).
        algorithms: the algorithms this key may verify (by type, size, curve and JWK ``alg``).
        kid: the JWK key id, ``None`` for a secret or PEM key.
    """

    material: bytes | PublicKey = field(repr=False)
    key_type: KeyType
    algorithms: frozenset[str]
    kid: str | None = None


@dataclass(frozen=True, slots=True)
class JwtKeys:
    """The verification keys: one HMAC secret, or public keys. Build it with ``from_secret``,
    ``from_pem`` or ``from_jwks`` from already-read material.

    Raises:
        ValueError: when there are no keys, two keys share a ``kid``, or one of several keys
            has no ``kid`` (a token could never name it).
    """

    keys: tuple[JwtKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("no verification keys")
        kids = [key.kid for key in self.keys]
        if len(self.keys) > 1 and None in kids:
            raise ValueError("with several keys, every key needs a kid")
        if len(set(kids)) != len(kids):
            raise ValueError("two keys share a kid")

    @classmethod
    def from_secret(cls, secret: bytes) -> JwtKeys:
        """One HMAC secret (``HS256``; also ``HS384`` from 48 bytes and ``HS512`` from 64).

        Raises:
            ValueError: when the secret is shorter than ``MIN_SECRET_BYTES`` or is a PEM/SSH
                public key (which is public, so anyone could sign with it).
        """
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the HMAC secret is {len(secret)} bytes long; at least {MIN_SECRET_BYTES} are"
                " required (RFC 7518 §3.2): a shorter one can be brute-forced from any token"
            )
        try:
            checked = _CheckedSecret(HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret))
        except jwt.InvalidKeyError:
            raise ValueError("the HMAC secret is a public key, which anyone can read") from None
        algorithms = frozenset(alg for alg, size in _HMAC_MIN_BYTES.items() if len(secret) >= size)
        return cls((JwtKey(checked, "oct", algorithms),))

    @classmethod
    def from_pem(cls, pem: bytes) -> JwtKeys:
        """One public key (RSA, EC, Ed25519, Ed448) from a PEM public key or certificate.

        Raises:
            ValueError: when ``pem`` is not one public key or certificate, or the key is weak.
        """
        blocks = pem.count(b"-----BEGIN ")
        if blocks != 1:
            raise ValueError(f"expected one PEM block, found {blocks} (several keys: use a JWKS)")
        if b"PRIVATE KEY-----" in pem:
            raise ValueError("holds a private key: give the server only the public key")
        try:
            if b"-----BEGIN CERTIFICATE-----" in pem:
                public_key: object = x509.load_pem_x509_certificate(pem).public_key()
            else:
                public_key = load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not a valid PEM public key or certificate") from None
        return cls((_public_key(public_key, None, None),))

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> JwtKeys:
        """The signature keys of a JWKS (RFC 7517 §5), each restricted to its ``alg`` if given;
        keys with ``"use": "enc"`` are skipped.

        Raises:
            ValueError: when the JWKS is malformed, holds a symmetric or private key, or any
                signature key is unusable (not skipped: that would hide a typo).
        """
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError('a JWKS must be an object with a non-empty "keys" list')
        keys: list[JwtKey] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ValueError(f"keys[{index}] is not an object")
            if entry.get("use", "sig") != "sig":
                continue
            keys.append(_jwk(index, entry))
        if not keys:
            raise ValueError('the JWKS has no signature keys (all are "use": "enc")')
        return cls(tuple(keys))

    def select(self, kid: object) -> JwtKey | None:
        """The key a token's ``kid`` names; else the only key, if the token names none or the
        key has no kid (a secret or PEM key)."""
        for key in self.keys:
            if kid is not None and key.kid == kid:
                return key
        if len(self.keys) == 1 and (kid is None or self.keys[0].kid is None):
            return self.keys[0]
        return None


def _jwk(index: int, entry: Mapping[str, Any]) -> JwtKey:
    where = f"keys[{index}]"
    if entry.get("kty") == "oct":
        raise ValueError(f"{where} is a symmetric key (oct): use auth.jwt.secret_env for it")
    if "d" in entry:
        raise ValueError(f"{where} is a private key: give the server only the public key")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError(f"{where}: kid must be a string")
    alg = entry.get("alg")
    if alg is not None and (not isinstance(alg, str) or alg not in _KNOWN_ALGORITHMS):
        raise ValueError(f"{where}: unsupported alg {alg!r}")
    try:
        public_key = jwt.PyJWK(dict(entry)).key
    except jwt.PyJWTError as exc:
        raise ValueError(f"{where} is not a usable public key ({type(exc).__name__})") from None
    return _public_key(public_key, kid, alg)


def _public_key(public_key: object, kid: str | None, alg: str | None) -> JwtKey:
    key_type: KeyType
    if isinstance(public_key, RSAPublicKey):
        if public_key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"RSA key of {public_key.key_size} bits: at least 2048 are required")
        key_type, algorithms = "RSA", _RSA_ALGORITHMS
    elif isinstance(public_key, EllipticCurvePublicKey):
        curve_alg = _EC_ALGORITHMS.get(public_key.curve.name)
        if curve_alg is None:
            raise ValueError(f"unsupported EC curve {public_key.curve.name}")
        key_type, algorithms = "EC", frozenset({curve_alg})
    elif isinstance(public_key, Ed25519PublicKey | Ed448PublicKey):
        key_type, algorithms = "OKP", frozenset({"EdDSA"})
    else:
        raise ValueError(f"unsupported key type {type(public_key).__name__}")
    if alg is not None:
        if alg not in algorithms:
            raise ValueError(f"alg {alg} cannot be used with this {key_type} key")
        algorithms = frozenset({alg})
    return JwtKey(public_key, key_type, algorithms, kid)


class JwtVerifier:
    """Verifies a JWT against the keys and the configured claims.

    Args:
        keys: the verification keys.
        algorithms: ``auth.jwt.algorithms``; a key verifies only those its type permits.
        audience: ``auth.jwt.audience``; when ``None``, tokens carrying ``aud`` are refused.
        issuer: ``auth.jwt.issuer``; when set, ``iss`` must equal it.
        leeway: seconds of clock skew tolerated on ``exp`` and ``nbf``.

    Raises:
        ValueError: when an algorithm is ``none`` or unknown, ``leeway`` is negative or not
            finite, or no key can verify any of the configured algorithms.
    """

    __slots__ = ("_algorithms", "_audience", "_issuer", "_keys", "_leeway")

    def __init__(
        self,
        keys: JwtKeys,
        algorithms: Sequence[str],
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        for algorithm in algorithms:
            if algorithm.lower() == "none":
                raise ValueError('the "none" algorithm is never allowed: it accepts forgeries')
            if algorithm not in _KNOWN_ALGORITHMS:
                raise ValueError(f"unknown JWT algorithm {algorithm!r}")
        if not (math.isfinite(leeway) and leeway >= 0):
            raise ValueError("leeway must be a finite number of seconds >= 0")
        permitted = frozenset().union(*(key.algorithms for key in keys.keys))
        self._algorithms = frozenset(algorithms) & permitted
        if not self._algorithms:
            raise ValueError(
                f"no key can verify {', '.join(algorithms) or 'no algorithm'}; the keys permit"
                f" {', '.join(sorted(permitted))}"
            )
        self._keys = keys
        self._audience = audience
        self._issuer = issuer
        self._leeway = float(leeway)

    def verify(self, token: str, now: float) -> Principal | Reject:
        """``Principal(sub, "jwt", roles, channels, expires_at=exp)`` for a valid ``token`` at
        ``now``, else a 401 ``Reject`` with a reason in ``JWT_REASONS``. Never raises."""
        # A compact JWS is ASCII; checking the length first bounds everything after it.
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return _REJECTS["malformed_token"]
        try:
            header = _JWS.get_unverified_header(token)
        except jwt.PyJWTError:
            return _REJECTS["malformed_token"]
        # The header is unauthenticated: it only selects among what we already allow
        # (RFC 8725 §3.1), it never widens it.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            return _REJECTS["alg_not_allowed"]
        key = self._keys.select(header.get("kid"))
        if key is None:
            return _REJECTS["unknown_kid"]
        if alg not in key.algorithms:
            return _REJECTS["alg_not_allowed"]
        try:
            # What jwt.decode does with our options, minus its second parse of the token (see
            # _Jws) and its claim checks (all off: the claims are checked below).
            decoded = _JWS.decode_complete(token, key.material, algorithms=[alg])
        except jwt.InvalidSignatureError:
            return _REJECTS["bad_signature"]
        except jwt.PyJWTError:
            return _REJECTS["malformed_token"]
        claims = _claims(decoded["payload"])
        if claims is None:
            return _REJECTS["malformed_token"]
        return self._principal(claims, now)

    def _principal(self, claims: dict[str, Any], now: float) -> Principal | Reject:
        # RFC 7519 §4.1.4: the token "MUST NOT be accepted for processing" at or after exp.
        if claims.get("exp") is None:
            return _REJECTS["missing_exp"]
        expires_at = _numeric_date(claims["exp"])
        if expires_at is None:
            return _REJECTS["bad_claims"]
        if expires_at + self._leeway <= now:
            return _REJECTS["expired"]
        # RFC 7519 §4.1.5: nor before nbf.
        if claims.get("nbf") is not None:
            not_before = _numeric_date(claims["nbf"])
            if not_before is None:
                return _REJECTS["bad_claims"]
            if not_before - self._leeway > now:
                return _REJECTS["not_yet_valid"]
        reject = self._check_audience(claims.get("aud"))
        if reject is not None:
            return reject
        if self._issuer is not None and claims.get("iss") != self._issuer:
            return _REJECTS["issuer"]
        subject = claims.get("sub")
        # Control characters in a user id would forge lines in the logs that print it.
        if not (isinstance(subject, str) and 0 < len(subject) <= 255 and subject.isprintable()):
            return _REJECTS["missing_subject"]
        roles = _string_set(claims.get("roles"))
        channels = _string_set(claims.get("channels"))
        if roles is None or channels is None:
            return _REJECTS["bad_claims"]
        issued_at = _numeric_date(claims["iat"]) if claims.get("iat") is not None else None
        return Principal(subject, "jwt", roles, channels, expires_at, issued_at)

    def _check_audience(self, aud: object) -> Reject | None:
        if aud is None:
            return None if self._audience is None else _REJECTS["audience"]
        audiences = [aud] if isinstance(aud, str) else aud
        if not (isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)):
            return _REJECTS["bad_claims"]
        # RFC 7519 §4.1.3: a recipient that does not identify itself with a value in a present
        # "aud" claim MUST reject the token -- also when no audience is configured.
        if self._audience is None or self._audience not in audiences:
            return _REJECTS["audience"]
        return None


def _numeric_date(value: object) -> float | None:
    """A NumericDate (RFC 7519 §2) as finite float seconds, or ``None`` when it is not one."""
    # bool is an int to Python, not to JSON; NaN and Infinity are accepted by Python's json
    # parser and would make every comparison false (a token that never expires).
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _string_set(value: object) -> frozenset[str] | None:
    """A list-of-strings claim as a set (absent: empty), or ``None`` when it is not one."""
    if value is None:
        return frozenset()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    return None


class JwtAuthenticator:
    """The ``jwt`` method at the handshake: a token in ``Authorization: Bearer`` (RFC 6750 §2.1).

    Never reads a token from the query string: URLs end up in proxy and access logs. The
    first-message flow (``{"op": "auth", "token": ...}``) calls ``JwtVerifier.verify`` directly.
    """

    __slots__ = ("_verifier",)

    def __init__(self, verifier: JwtVerifier) -> None:
        self._verifier = verifier

    @property
    def name(self) -> str:
        return "jwt"

    @property
    def verifier(self) -> JwtVerifier:
        """The verifier in use. Assigning a new one swaps the keys of a live authenticator (a
        JWKS refresh): each token is checked against one verifier, the old or the new."""
        return self._verifier

    @verifier.setter
    def verifier(self, verifier: JwtVerifier) -> None:
        self._verifier = verifier

    def authenticate(
        self, request: UpgradeRequest, ctx: HandshakeContext, now: float
    ) -> Principal | Reject | None:
        """The bearer token's principal, a ``Reject``, or ``None`` without a Bearer header. Two
        ``Authorization`` fields are a 400: a proxy and this server could each pick another."""
        values = request.headers.get_all("Authorization")
        if not values:
            return None
        if len(values) > 1:
            return _DUPLICATE_AUTHORIZATION
        scheme, _, credentials = values[0].strip(" \t").partition(" ")
        # RFC 9110 §11.1: the auth scheme is case-insensitive.
        if not (scheme.isascii() and scheme.lower() == "bearer"):
            return None
        return self._verifier.verify(credentials.strip(" \t"), now)
