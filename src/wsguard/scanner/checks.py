"""The catalogue: every weakness ``wsguard scan`` looks for, why it matters and what fixes it.

Pure data. The probes (``probes.py``, ``frames.py``) decide which of these failed; the reports
print them. Ids are stable: they are the SARIF rule ids. ``--checks`` selects by ``group``.
"""

from __future__ import annotations

from typing import Final

from wsguard.scanner.model import Check, Reference, Severity

__all__ = ["CATALOGUE", "GROUPS", "by_id"]

_CS: Final = Reference(
    "OWASP WebSocket Security Cheat Sheet",
    "https://cheatsheetseries.owasp.org/cheatsheets/WebSocket_Security_Cheat_Sheet.html",
)
_WSTG: Final = Reference(
    "OWASP WSTG-CLNT-10 Testing WebSockets",
    "https://owasp.org/www-project-web-security-testing-guide/latest/"
    "4-Web_Application_Security_Testing/11-Client-side_Testing/10-Testing_WebSockets",
)
_WSTG_TLS: Final = Reference(
    "OWASP WSTG-CRYP-01 Testing for Weak Transport Layer Security",
    "https://owasp.org/www-project-web-security-testing-guide/latest/"
    "4-Web_Application_Security_Testing/09-Testing_for_Weak_Cryptography/"
    "01-Testing_for_Weak_Transport_Layer_Security",
)


def _rfc(number: int, section: str) -> Reference:
    return Reference(
        f"RFC {number} §{section}",
        f"https://www.rfc-editor.org/rfc/rfc{number}#section-{section}",
    )


def _cwe(number: int) -> Reference:
    return Reference(f"CWE-{number}", f"https://cwe.mitre.org/data/definitions/{number}.html")


_ORIGIN_FIX: Final = (
    '[origins]\nallowed = ["https://app.example.com"]   # exact scheme://host[:port] matches\n'
    "allow_any_origin = false"
)

CATALOGUE: Final[tuple[Check, ...]] = (
    # -- Origin: cross-site WebSocket hijacking -------------------------------------------
    Check(
        "origin-foreign", "origin", "A foreign Origin is accepted (cross-site WebSocket hijacking)",
        Severity.HIGH,
        "Any web page can open a socket to this endpoint from its visitors' browsers, with their"
        " cookies and network position, then read and send messages as them.",
        "Compare the Origin header against an exact allow-list of serialized origins and refuse"
        " the handshake (HTTP 403) for anything else.",
        _ORIGIN_FIX, (_CS, _WSTG, _rfc(6455, "10.2"), _cwe(1385)), 1385,
    ),
    Check(
        "origin-null", "origin", 'Origin "null" is accepted',
        Severity.HIGH,
        'Sandboxed iframes, data: and file:// pages send Origin "null"; an attacker can produce'
        " it from any page, so accepting it is accepting every origin.",
        'Refuse Origin "null" unless a known non-web client needs it, and then authenticate it'
        " by a token, not a cookie.",
        "[origins]\nallow_null = false", (_CS, _rfc(6454, "7.3"), _cwe(1385)), 1385,
    ),
    Check(
        "origin-missing", "origin", "Handshakes without an Origin header are accepted",
        Severity.MEDIUM,
        "Browsers always send Origin; accepting its absence lets non-browser tools and some"
        " proxies through unchecked. Acceptable only when every client authenticates with a token.",
        "Refuse handshakes without Origin, or require token or ticket authentication for them.",
        "[origins]\nallow_missing = false", (_CS, _rfc(6455, "4.2.1"), _cwe(1385)), 1385,
    ),
    Check(
        "origin-lookalike", "origin", "Look-alike origins pass the Origin check (prefix, suffix,"
        " substring or regex match)",
        Severity.HIGH,
        "The check matches part of the origin: an attacker who registers a look-alike domain"
        " (app.example.com.attacker.test, evilapp.example.com) hijacks sockets as with no check.",
        "Compare whole serialized origins for equality; never startswith, endswith, 'in' or an"
        " unanchored regular expression with unescaped dots.",
        _ORIGIN_FIX, (_CS, _WSTG, _cwe(1385), _cwe(185)), 1385,
    ),
    Check(
        "origin-subdomain", "origin", "Any subdomain of the trusted host is accepted as an origin",
        Severity.MEDIUM,
        "A wildcard trusts every present and future subdomain: one forgotten or taken-over"
        " subdomain (a dangling DNS record, a user-content host) can hijack sockets.",
        "List the subdomains that serve your pages one by one instead of a wildcard.",
        '[origins]\nallowed = ["https://app.example.com"]   # no "https://*.example.com"',
        (_CS, _cwe(1385)), 1385,
    ),
    Check(
        "origin-scheme", "origin", "The trusted origin over plain http:// is accepted",
        Severity.MEDIUM,
        "A network attacker can inject script into the http:// version of the page and open"
        " sockets with the user's cookies.",
        "Allow only the https:// origin.",
        _ORIGIN_FIX, (_CS, _cwe(1385)), 1385,
    ),
    Check(
        "origin-port", "origin", "The trusted host on another port is accepted as an origin",
        Severity.MEDIUM,
        "Another service on the same host (a different origin) can hijack sockets.",
        "Match the port too: origins are scheme, host and port.",
        _ORIGIN_FIX, (_CS, _rfc(6454, "4"), _cwe(1385)), 1385,
    ),
    Check(
        "origin-multiple", "origin", "A handshake with two Origin headers is accepted",
        Severity.MEDIUM,
        "Different layers may read different Origin headers; a proxy checks one, the server"
        " uses the other.",
        "Refuse handshakes with more than one Origin header (HTTP 400).",
        "# built in: wsguard refuses duplicate Origin headers", (_rfc(6454, "7.3"), _cwe(1385)),
        1385,
    ),
    # -- Host: DNS rebinding ------------------------------------------------------------
    Check(
        "host-spoof", "host", "The Host header is not checked (DNS rebinding)",
        Severity.MEDIUM,
        "A page on an attacker's domain that resolves to this server (DNS rebinding) reaches it"
        " with Host set to the attacker's name; internal and loopback services are exposed.",
        "Allow-list the Host header and refuse others (HTTP 421 or 403) before any other check.",
        '[origins]\nallowed_hosts = ["app.example.com"]',
        (_CS, Reference("CVE-2018-7160", "https://nvd.nist.gov/vuln/detail/CVE-2018-7160"),
         _cwe(350)), 350,
    ),
    Check(
        "host-rebinding", "host", "An Origin equal to a spoofed Host is accepted",
        Severity.HIGH,
        "The server trusts any origin that matches the Host header; with DNS rebinding the"
        " attacker controls both, so the Origin check is void.",
        "Check Host against an allow-list first, then Origin against its own allow-list; never"
        " derive the allowed origin from Host.",
        '[origins]\nallowed_hosts = ["app.example.com"]\nallowed = ["https://app.example.com"]',
        (_CS, Reference("CVE-2018-7160", "https://nvd.nist.gov/vuln/detail/CVE-2018-7160"),
         _cwe(350)), 350,
    ),
    # -- Transport ---------------------------------------------------------------------
    Check(
        "tls-plaintext", "tls", "Plain ws:// is accepted",
        Severity.HIGH,
        "Messages, cookies and tokens cross the network unencrypted; anyone on the path reads"
        " and changes them.",
        "Serve wss:// only (TLS on the server or a TLS-terminating proxy); refuse plain ws://.",
        '[server]\ntls_cert = "/etc/wsguard/tls/fullchain.pem"\n'
        'tls_key = "/etc/wsguard/tls/privkey.pem"\nallow_plaintext = false',
        (_CS, _WSTG, _rfc(6455, "10.6"), _cwe(319)), 319,
    ),
    Check(
        "tls-certificate", "tls", "The TLS certificate does not verify",
        Severity.HIGH,
        "Clients that verify refuse to connect; clients told to skip verification can be"
        " intercepted by anyone on the path.",
        "Serve a certificate for this host name from a trusted CA, with its full chain.",
        '[server]\ntls_cert = "/etc/wsguard/tls/fullchain.pem"   # the full chain',
        (_WSTG_TLS, _cwe(295)), 295,
    ),
    Check(
        "tls-legacy", "tls", "TLS 1.0 or 1.1 is accepted",
        Severity.MEDIUM,
        "TLS 1.0 and 1.1 are deprecated (RFC 8996) and lack modern cipher suites.",
        "Accept TLS 1.2 and newer only.",
        "# built in: wsguard's TLS context refuses versions below 1.2",
        (_WSTG_TLS, _rfc(8996, "1"), _cwe(326)), 326,
    ),
    # -- Authentication ------------------------------------------------------------------
    Check(
        "auth-none", "auth", "Clients without credentials are answered",
        Severity.HIGH,
        "Anyone who can reach the endpoint uses it; nothing ties a message to a user.",
        "Authenticate in the handshake or the first message (a short-lived ticket or a token)"
        " and close sockets that do not within a few seconds.",
        '[auth]\nrequired = true\nmethods = ["ticket", "jwt"]\nfirst_message_timeout = 5',
        (_CS, _WSTG, _cwe(306)), 306,
    ),
    Check(
        "auth-query-token", "auth", "A long-lived credential travels in the URL query string",
        Severity.MEDIUM,
        "URLs end up in proxy and server logs, browser history and Referer headers.",
        "Send tokens in the first message or an Authorization header; if a URL must carry one,"
        " make it a single-use ticket that expires in seconds.",
        '[auth]\nmethods = ["ticket", "jwt"]   # tickets are single-use; JWTs go in a message',
        (_CS, _cwe(598)), 598,
    ),
    Check(
        "auth-cookie-only", "auth", "A cookie alone authenticates the handshake (no CSRF token)",
        Severity.MEDIUM,
        "Browsers attach cookies to cross-site handshakes; with cookies alone, the Origin check is"
        " the only thing between a malicious page and the user's session.",
        "Require a per-connection token or single-use ticket that a foreign page cannot read, in"
        " addition to (or instead of) the cookie.",
        '[auth]\nmethods = ["ticket"]   # a ticket bound to the page origin, minted per connection',
        (_CS, _WSTG, _cwe(352)), 352,
    ),
    # -- Limits ----------------------------------------------------------------------------
    Check(
        "limits-message-size", "limits", "Messages over 1 MiB are accepted",
        Severity.MEDIUM,
        "Large messages are buffered whole: a few clients exhaust the server's memory.",
        "Cap the message size to what the application needs and close with 1009 above it.",
        "[limits]\nmax_message_bytes = 65536", (_CS, _rfc(6455, "10.4"), _cwe(770)), 770,
    ),
    Check(
        "limits-fragments", "limits", "A message split into 1,000 fragments is accepted",
        Severity.LOW,
        "Floods of tiny fragments cost per-frame CPU and memory without tripping size limits.",
        "Bound the number of fragments per message.",
        "[limits]\nmax_fragments = 128", (_rfc(6455, "10.4"), _cwe(770)), 770,
    ),
    Check(
        "limits-compression", "limits", "permessage-deflate is negotiated",
        Severity.LOW,
        "Compression next to secrets leaks them through compressed sizes (CRIME/BREACH), and"
        " every socket keeps compression state in memory.",
        "Turn compression off, or never mix secrets with attacker-controlled data in one message.",
        "[limits]\ncompression = false", (_CS, _rfc(7692, "8"), _cwe(200)), 200,
    ),
    Check(
        "limits-compression-bomb", "limits", "A compressed message inflating past 16 MiB is"
        " accepted",
        Severity.HIGH,
        "A few kilobytes on the wire inflate to megabytes in the server's memory.",
        "Enforce the message size limit after decompression, or turn compression off.",
        "[limits]\ncompression = false\nmax_message_bytes = 65536",
        (_rfc(7692, "8"), _cwe(409)), 409,
    ),
    Check(
        "limits-ping-flood", "limits", "A flood of pings is answered without limit",
        Severity.LOW,
        "Control frames bypass message rate limits: each ping costs the server a pong.",
        "Count control frames against the connection's rate limit and close repeat offenders.",
        "[limits]\nmessages_per_second = 20   # pings share this rate and burst\nburst = 40",
        (_rfc(6455, "10.4"), _cwe(770)), 770,
    ),
    Check(
        "limits-handshake-timeout", "limits", "An unfinished handshake is held open (slowloris)",
        Severity.LOW,
        "Clients that never finish the opening handshake hold sockets and memory indefinitely.",
        "Close connections that do not complete the handshake within a few seconds.",
        "[limits]\nhandshake_timeout = 5", (_CS, _cwe(400)), 400,
    ),
    Check(
        "limits-idle", "limits", "Idle connections are not closed",
        Severity.LOW,
        "Sockets that stay open without traffic hold memory and file descriptors forever.",
        "Close connections idle past a timeout; ping to detect dead peers.",
        "[limits]\nidle_timeout = 300\nping_interval = 20\nping_timeout = 20",
        (_CS, _cwe(400)), 400,
    ),
    # -- Framing: RFC 6455 MUSTs -------------------------------------------------------------
    Check(
        "frame-unmasked", "framing", "An unmasked client frame is accepted",
        Severity.MEDIUM,
        "RFC 6455 requires servers to close on unmasked client frames; masking protects"
        " intermediaries from cache poisoning by crafted payloads.",
        "Close the connection with 1002 on any unmasked client frame.",
        "# built in: wsguard fails the connection with 1002", (_rfc(6455, "5.1"), _cwe(20)), 20,
    ),
    Check(
        "frame-reserved-bits", "framing", "A frame with reserved bits set is accepted",
        Severity.LOW,
        "Reserved bits without a negotiated extension mean a broken or hostile peer.",
        "Close with 1002 on any reserved bit no extension defines.",
        "# built in: wsguard fails the connection with 1002", (_rfc(6455, "5.2"), _cwe(20)), 20,
    ),
    Check(
        "frame-opcode", "framing", "A frame with a reserved opcode is accepted",
        Severity.LOW,
        "Unknown opcodes must fail the connection; ignoring them hides parser confusion.",
        "Close with 1002 on reserved opcodes.",
        "# built in: wsguard fails the connection with 1002", (_rfc(6455, "5.2"), _cwe(20)), 20,
    ),
    Check(
        "frame-utf8", "framing", "A text message with invalid UTF-8 is accepted",
        Severity.LOW,
        "Invalid text reaches the application, where decoders disagree about it.",
        "Close with 1007 on invalid UTF-8 in text messages.",
        "# built in: wsguard fails the connection with 1007", (_rfc(6455, "8.1"), _cwe(176)), 176,
    ),
    Check(
        "frame-length", "framing", "A frame declaring a 2^63-byte length is not refused",
        Severity.MEDIUM,
        "Lengths with the most significant bit set overflow signed arithmetic (CVE-2020-27813).",
        "Fail the connection at the header on a length with the top bit set (1002 or 1009) or "
        "over the size limit (1009), before reading or allocating the payload.",
        "[limits]\nmax_message_bytes = 65536",
        (_rfc(6455, "5.2"), Reference("CVE-2020-27813",
                                       "https://nvd.nist.gov/vuln/detail/CVE-2020-27813"),
         _cwe(190)), 190,
    ),
    # -- Disclosure ------------------------------------------------------------------------
    Check(
        "disclosure-server-header", "disclosure", "Response headers disclose software versions",
        Severity.LOW,
        "Version banners tell an attacker which published vulnerabilities to try.",
        "Remove version numbers from Server and X-Powered-By headers.",
        "# built in: wsguard sends no Server header", (_WSTG, _cwe(497)), 497,
    ),
    Check(
        "disclosure-close-reason", "disclosure", "Close reasons disclose implementation details",
        Severity.LOW,
        "Library-specific error strings fingerprint the server (STEWS); exception text can leak"
        " internals.",
        "Send fixed, generic close reasons; log the details instead.",
        "# built in: wsguard sends fixed generic reasons", (_WSTG, _cwe(209)), 209,
    ),
    # -- Input and output ----------------------------------------------------------------------
    Check(
        "input-reflected", "input", "Input is reflected unencoded in replies",
        Severity.MEDIUM,
        "Markup sent by one client comes back raw; a page that inserts it into the DOM runs the"
        " attacker's script (XSS), and other clients may receive it too.",
        "Validate messages against a schema and encode output for its context before sending.",
        '[[channels]]\npattern = "chat:*"\nschema = "schemas/chat-message.json"\nencode = "html"',
        (_CS, _WSTG, _cwe(79)), 79,
    ),
)  # fmt: skip

GROUPS: Final = tuple(dict.fromkeys(check.group for check in CATALOGUE))

_BY_ID: Final = {check.id: check for check in CATALOGUE}


def by_id(check_id: str) -> Check:
    """The catalogue entry ``check_id``; raises ``KeyError`` for an unknown id."""
    return _BY_ID[check_id]
