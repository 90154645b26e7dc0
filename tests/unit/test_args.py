"""Arguments as recorded: redaction, truncation, hostile reprs."""

from __future__ import annotations

import dataclasses

from proctrace._core.arguments import describe
from proctrace._core.redact import is_secret, safe_repr, scrub


def test_secret_names_match_case_insensitive_substrings():
    """password, token, api_key... anywhere in the name, any case: a name that merely
    contains a secret word (``tokenizer_name``) is redacted too, while a name holding no whole
    secret word (``tok``, ``pass``, ``key1``) is not."""
    for name in ("password", "DB_PASSWORD", "passwd", "client_secret", "AuthToken", "api_key",
                 "X-Api-Key", "Authorization", "credentials", "ssh_private_key",
                 "tokenizer_name"):  # over-redacting by substring, by design
        assert is_secret(name), name
    for name in ("user", "host", "key1", "tok", "pass", "api", "author"):
        assert not is_secret(name), name
    assert is_secret("pin", extra=("pin",))
    assert not is_secret(3)


@dataclasses.dataclass
class Conn:
    host: str
    token: str


def test_secrets_inside_mappings_dataclasses_and_sequences_are_replaced():
    """Nested secret keys are redacted; values without secrets are returned untouched."""

    value = [{"user": "u", "nested": {"Password": "p"}}, Conn("h", "t")]
    shown = repr(scrub(value))
    assert shown == (
        "[{'user': 'u', 'nested': {'Password': [REDACTED]}}, Conn(host='h', token=[REDACTED])]"
    )
    plain = {"a": [1, 2]}
    assert scrub(plain) is plain


def test_reprs_that_raise_recurse_or_are_huge_are_safe():
    """A raising repr gives a placeholder, a recursive one is fine, a huge one is cut."""

    class Bad:
        def __repr__(self):
            raise SystemExit(3)

    loop: list[object] = []
    loop.append(loop)
    assert safe_repr(Bad(), 50) == "<unrepresentable Bad: SystemExit>"
    assert safe_repr(loop, 50) == "[[...]]"
    assert safe_repr("x" * 10_000_000, 20) == "'" + "x" * 18 + "…"
    assert safe_repr({1: "a", (2, 3): "b"}, 100) == "{1: 'a', (2, 3): 'b'}"


def test_positional_arguments_bound_to_secret_parameters_are_redacted():
    """A secret passed by position is hidden by its parameter's name."""

    def login(user, password, *rest):
        pass

    args, kwargs = describe(login, ("ann", "pw", "extra"), {"token": "t"}, limit=100)
    assert args == ["'ann'", "[REDACTED]", "'extra'"]
    assert kwargs == {"token": "[REDACTED]"}


def test_a_multiprocessing_authkey_is_redacted_under_any_name():
    """An ``AuthenticationString`` (a Manager's key, a process's own) is a credential
    whatever its parameter, key or position is called; ``authkey`` names are secret too."""
    from multiprocessing.process import AuthenticationString

    key = AuthenticationString(b"k3y-bytes-hunter2")
    assert is_secret("authkey") and is_secret("auth_key") and is_secret("_authkey")

    def serve(address, key_material, options):
        pass

    args, _ = describe(serve, ("host", key, {"k": key}), {}, limit=200)
    assert args == ["'host'", "[REDACTED]", "{'k': [REDACTED]}"]
    assert "hunter2" not in repr(scrub([key, (1, key)]))
