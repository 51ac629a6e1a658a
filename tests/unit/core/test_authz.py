"""Per-message channel authorization (``wsguard.core.authz``): deny by default."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsguard.core.authz import ACTIONS, Action, Denied, authorize, grants_allow
from wsguard.core.channels import ChannelRules
from wsguard.core.decisions import ANONYMOUS, PENDING, Principal
from wsguard.exceptions import InvalidState
from wsguard.settings import ChannelConfig

BAD = Denied(400, "bad_channel")
UNKNOWN = Denied(404, "unknown_channel")
FORBIDDEN = Denied(403, "forbidden")

ALICE = Principal(user_id="alice", method="jwt")
BOB = Principal(user_id="bob", method="jwt", roles=frozenset({"admin"}))
CAROL = Principal(user_id="carol", method="ticket", channels=frozenset({"room:secret"}))
# A pending socket that would match every grant if it were not pending.
PENDING_LOADED = Principal(
    user_id="alice",
    method="pending",
    roles=frozenset({"admin"}),
    channels=frozenset({"room:secret", "user:alice"}),
)


def rules_granting(pattern: str, *grants: str, action: Action = "subscribe") -> ChannelRules:
    return ChannelRules([ChannelConfig(pattern=pattern, **{action: grants})])


# ---------------------------------------------------------------- every grant, both ways


@pytest.mark.parametrize(
    ("grant", "pattern", "principal", "channel", "expected"),
    [
        # anonymous: anyone who is not pending
        ("anonymous", "chat:*", ANONYMOUS, "chat:lobby", None),
        ("anonymous", "chat:*", ALICE, "chat:lobby", None),
        ("anonymous", "chat:*", PENDING, "chat:lobby", FORBIDDEN),
        # authenticated: any principal with a user id
        ("authenticated", "chat:*", ALICE, "chat:lobby", None),
        ("authenticated", "chat:*", ANONYMOUS, "chat:lobby", FORBIDDEN),
        ("authenticated", "chat:*", PENDING, "chat:lobby", FORBIDDEN),
        # role:NAME, exact and case-sensitive
        ("role:admin", "ops:*", BOB, "ops:deploy", None),
        ("role:admin", "ops:*", ALICE, "ops:deploy", FORBIDDEN),
        ("role:Admin", "ops:*", BOB, "ops:deploy", FORBIDDEN),
        ("role:admi", "ops:*", BOB, "ops:deploy", FORBIDDEN),
        ("role:admin", "ops:*", ANONYMOUS, "ops:deploy", FORBIDDEN),
        # owner: the last segment is exactly the user id
        ("owner", "user:*", ALICE, "user:alice", None),
        ("owner", "user:*", BOB, "user:alice", FORBIDDEN),
        ("owner", "user:*", ALICE, "user:alice2", FORBIDDEN),
        ("owner", "user:*", ALICE, "user:xalice", FORBIDDEN),
        ("owner", "user:*", ALICE, "user:ALICE", FORBIDDEN),
        ("owner", "user:*", ALICE, "user:alice:extra", UNKNOWN),
        ("owner", "user:*", ALICE, "user:", BAD),
        ("owner", "user:*", ANONYMOUS, "user:alice", FORBIDDEN),
        ("owner", "user:*:inbox", ALICE, "user:alice:inbox", FORBIDDEN),
        ("owner", "inbox:*:*", ALICE, "inbox:bob:alice", None),
        # claim: the credential lists this exact channel
        ("claim", "room:*", CAROL, "room:secret", None),
        ("claim", "room:*", CAROL, "room:secret2", FORBIDDEN),
        ("claim", "room:*", CAROL, "room:Secret", FORBIDDEN),
        ("claim", "room:*", ALICE, "room:secret", FORBIDDEN),
        # an unknown grant word grants nothing
        ("everyone", "chat:*", ALICE, "chat:lobby", FORBIDDEN),
        ("admin", "chat:*", BOB, "chat:lobby", FORBIDDEN),
    ],
)
def test_grant(grant: str, pattern: str, principal: Principal, channel: str, expected: object):
    assert authorize(rules_granting(pattern, grant), principal, "subscribe", channel) == expected


def test_owner_with_an_empty_user_id_owns_nothing():
    nobody = Principal(user_id="", method="jwt")
    assert authorize(rules_granting("user:*", "owner"), nobody, "subscribe", "user:x") == FORBIDDEN


@pytest.mark.parametrize("grant", ["anonymous", "authenticated", "role:admin", "owner", "claim"])
def test_pending_principal_is_granted_nothing(grant: str):
    for channel in ("user:alice", "room:secret"):
        rules = ChannelRules(
            [ChannelConfig(pattern=p, subscribe=(grant,)) for p in ("user:*", "room:*")]
        )
        assert authorize(rules, PENDING_LOADED, "subscribe", channel) == FORBIDDEN


@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_reads_only_its_own_grants(action: Action):
    rules = rules_granting("chat:*", "anonymous", action=action)
    for other in ACTIONS:
        expected = None if other == action else FORBIDDEN
        assert authorize(rules, ALICE, other, "chat:lobby") == expected


def test_nothing_granted_is_denied():
    rules = ChannelRules([ChannelConfig(pattern="chat:*")])
    for action in ACTIONS:
        assert authorize(rules, BOB, action, "chat:lobby") == FORBIDDEN


def test_any_one_of_several_grants_suffices():
    rules = rules_granting("user:*", "role:admin", "owner")
    assert authorize(rules, ALICE, "subscribe", "user:alice") is None
    assert authorize(rules, BOB, "subscribe", "user:alice") is None
    assert authorize(rules, CAROL, "subscribe", "user:alice") == FORBIDDEN


def test_first_matching_rule_decides_even_when_a_later_one_would_allow():
    rules = ChannelRules(
        [
            ChannelConfig(pattern="user:admin", subscribe=("role:admin",)),
            ChannelConfig(pattern="user:*", subscribe=("owner",)),
        ]
    )
    admin_named_user = Principal(user_id="admin", method="jwt")
    assert authorize(rules, admin_named_user, "subscribe", "user:admin") == FORBIDDEN
    assert authorize(rules, BOB, "subscribe", "user:admin") is None
    assert authorize(rules, BOB, "subscribe", "user:bob") is None


@pytest.mark.parametrize(
    "channel",
    ["", "lobby", "chat:caf\u00e9", "chat:two words", "chat:" + "x" * 251, ":lobby", "chat::x"],
)
def test_invalid_names_are_400_before_any_rule(channel: str):
    rules = rules_granting("chat:*", "anonymous")
    assert authorize(rules, ALICE, "subscribe", channel) == BAD


def test_no_matching_rule_is_404():
    assert authorize(rules_granting("chat:*", "anonymous"), ALICE, "publish", "x:y") == UNKNOWN


def test_unknown_action_is_a_caller_bug():
    with pytest.raises(InvalidState, match="unknown channel action 'pattern'"):
        authorize(rules_granting("chat:*", "anonymous"), ALICE, cast(Action, "pattern"), "chat:a")


def test_grants_allow_denies_pending_before_looking_at_grants():
    assert grants_allow(("anonymous",), ANONYMOUS, "chat:a")
    assert not grants_allow(("anonymous",), PENDING, "chat:a")
    assert not grants_allow((), ALICE, "chat:a")


# ---------------------------------------------------------------- properties

GRANT_WORDS = st.sampled_from(
    ["anonymous", "authenticated", "owner", "claim", "role:a", "role:b", "role:c", "bogus"]
)
NAMES = st.sampled_from(["a", "b", "c", "alice", "A", ""])
PRINCIPALS = st.builds(
    Principal,
    user_id=st.one_of(st.none(), NAMES, st.text(max_size=8)),
    method=st.sampled_from(["jwt", "ticket", "anonymous", "pending", "cookie"]),
    roles=st.frozensets(st.one_of(NAMES, st.text(max_size=4)), max_size=4),
    channels=st.frozensets(st.sampled_from(["u:a", "u:alice", "c:x:y", "bad"]), max_size=3),
)
RULES = st.lists(
    st.builds(
        ChannelConfig,
        pattern=st.sampled_from(["u:*", "u:alice", "c:*:y", "c:x:*", "x:y", "c:*:*"]),
        subscribe=st.tuples(GRANT_WORDS, GRANT_WORDS),
        publish=st.tuples(GRANT_WORDS),
    ),
    max_size=4,
).map(ChannelRules)
CHANNELS = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="uacxyli:*@.-_ \u00e9", max_size=12),
    st.sampled_from(["u:a", "u:alice", "c:x:y", "x:y", "u:", "u:a:b"]),
)


@given(RULES, PRINCIPALS, st.sampled_from(ACTIONS), CHANNELS)
def test_authorize_never_raises_and_returns_a_known_decision(
    rules: ChannelRules, principal: Principal, action: Action, channel: str
):
    assert authorize(rules, principal, action, channel) in (None, BAD, UNKNOWN, FORBIDDEN)


@given(RULES, PRINCIPALS, st.frozensets(NAMES, max_size=3), st.sampled_from(ACTIONS), CHANNELS)
def test_more_roles_never_lose_access(
    rules: ChannelRules,
    principal: Principal,
    extra: frozenset[str],
    action: Action,
    channel: str,
):
    richer = Principal(
        user_id=principal.user_id,
        method=principal.method,
        roles=principal.roles | extra | {"a"},
        channels=principal.channels,
    )
    if authorize(rules, principal, action, channel) is None:
        assert authorize(rules, richer, action, channel) is None
