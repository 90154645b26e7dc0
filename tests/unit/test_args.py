"""Arguments as recorded: redaction, truncation, hostile reprs, a cost bounded by the limit."""

from __future__ import annotations

import collections
import dataclasses
import time
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctrace._core.arguments import describe
from proctrace._core.redact import is_secret, redact_text, safe_repr, scrub


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


# --- cost bounded by the repr limit, not by the argument's size -------------------------------
class Counted:
    """An object whose repr counts its calls: how many items a description looked at."""

    calls = 0

    def __repr__(self) -> str:
        Counted.calls += 1
        return "C"


def _plain(value: object, *rest: object) -> None:
    pass


def _described(value: object, limit: int = 256) -> str:
    (shown,), _ = describe(_plain, (value,), {}, limit=limit)
    return shown


def _peak_bytes(fn: Callable[[], object]) -> int:
    """The most memory Python allocated while ``fn`` ran."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_50_mb_bytes_or_str_argument_is_described_from_its_start_only():
    """Only the start of a huge ``bytes``, ``bytearray`` or ``str`` is repr'd: describing a
    50 MB one allocates well under a megabyte (its whole repr was 50 to 200 MB), and takes
    well under 50 ms (0.14 to 0.7 s); the text is repr's start, cut and marked with ``…``."""
    blob = bytes(50 * 2**20)
    text = "a" * (50 * 2**20)
    spaced = "a b " * (50 * 2**18)
    for value, start in ((blob, "b'\\x00\\x00"), (bytearray(blob[:2**20]), "bytearray(b'\\x00"),
                         (text, "'aaa"), (spaced, "'a b a b")):  # fmt: skip
        began = time.perf_counter()
        shown = _described(value)
        assert time.perf_counter() - began < 0.05
        assert _peak_bytes(lambda v=value: _described(v)) < 2**20
        assert shown.startswith(start) and shown.endswith("…") and len(shown) == 256
        assert shown == repr(value[:300])[:255] + "…"


def test_a_million_items_are_described_from_the_first_ones_only():
    """A list of lists of a million ints or a dict of a million items is described in well
    under 50 ms (0.17 s and 0.35 s before), as the start of its repr."""
    nested = [list(range(1000)) for _ in range(1000)]
    mapping = {i: i for i in range(10**6)}
    for value in (nested, mapping, list(range(10**6)), set(range(10**6)), tuple(range(10**6))):
        began = time.perf_counter()
        shown = _described(value)
        assert time.perf_counter() - began < 0.05
        assert len(shown) == 256 and shown.endswith("…")
        assert shown[:-1] == repr(value)[:255]


@pytest.mark.parametrize("shape", ["list", "tuple", "set", "frozenset", "dict", "keys",
                                   "nested", "pairs", "log"])  # fmt: skip
def test_only_the_items_that_fit_the_limit_are_looked_at(shape):
    """Of 100,000 items (reprs counted) only those that fit in the limit and the margin
    cleaned past it are repr'd, in every builtin container and nested ones, for arguments
    and log values (``safe_repr(scrub(x))``) alike; before, all 100,000 were."""
    items = [Counted() for _ in range(100_000)]
    value: object = {
        "list": items, "tuple": tuple(items), "set": set(items), "frozenset": frozenset(items),
        "dict": {i: c for i, c in enumerate(items)}, "keys": dict.fromkeys(items),
        "nested": [items[i : i + 100] for i in range(0, 100_000, 100)],
        "pairs": [("user", c) for c in items], "log": {"items": items},
    }[shape]  # fmt: skip
    Counted.calls = 0
    shown = safe_repr(scrub(value), 256) if shape == "log" else _described(value)
    assert len(shown) == 256 and shown.endswith("…")
    assert 0 < Counted.calls < 1000  # a few hundred: 256 characters and the 1024 of margin


def test_small_values_are_described_as_before():
    """The same text as repr gave, cut and marked with ``…`` as before."""
    assert _described([1, "a", b"b", (2,), {3}, frozenset({4}), {"k": None}, 1.5, True]) == (
        "[1, 'a', b'b', (2,), {3}, frozenset({4}), {'k': None}, 1.5, True]"
    )
    assert _described(((), [], {}, set(), frozenset(), bytearray(b"x'y"))) == (
        "((), [], {}, set(), frozenset(), bytearray(b\"x\\'y\"))"
    )
    assert _described({"a": [1, {"b": (2, "c")}]}) == "{'a': [1, {'b': (2, 'c')}]}"
    assert _described(list(range(100)), 20) == "[0, 1, 2, 3, 4, 5, …"
    loop: list[object] = [1]
    loop.append(loop)
    assert safe_repr(loop, 50) == "[1, [...]]"
    assert safe_repr({"d": [loop, {"e": loop}]}, 80) == repr({"d": [loop, {"e": loop}]})
    # repr's own text: OrderedDict([('a', 1)]) before Python 3.12, OrderedDict({'a': 1}) after
    assert _described(collections.OrderedDict(a=1)) == repr(collections.OrderedDict(a=1))


def test_objects_in_a_large_container_are_shown_by_their_own_repr():
    """An object with its own repr (even one whose truth value raises, as an array's does),
    an OrderedDict or a dataclass, inside a container scrubbed as it is shown: as before."""

    class Ambiguous:
        def __bool__(self) -> bool:
            raise ValueError("ambiguous")

        def __repr__(self) -> str:
            return "A()"

    items = [Ambiguous(), collections.OrderedDict(a=[1]), Conn("h", "t"), Conn("h", "x" * 5000)]
    shown = _described(items * 100, 100_000)
    assert shown == repr([scrub(v, (), 1) for v in items] * 100)
    ordered = repr(collections.OrderedDict(a=[1]))  # its text differs before 3.12
    assert shown.startswith(f"[A(), {ordered}, Conn(host='h', token=[REDACTED])")


@pytest.mark.parametrize("value", [
    "x" * 2000 + "'", "x" * 2000 + "'\"", "it's" + "x" * 2000 + '"', "it's" + "x" * 2000,
    '"' + "x" * 2000 + "'", "\\'" * 1000 + '"', "é€\U0001f600\x00\n" * 1000 + "'",
    b"x" * 2000 + b"'", b"it's" + b"x" * 2000 + b'"', b"it's" + b"\\x\xff" * 2000,
    bytearray(b"it's" + b"x" * 2000 + b'"'), bytearray(b"x" * 2000 + b"'"),
])  # fmt: skip
def test_a_cut_string_is_quoted_as_repr_quotes_all_of_it(value):
    """repr picks ``"`` when the text holds ``'`` but no ``"``, anywhere: a cut string's
    start is quoted and escaped as the whole string's repr is."""
    for limit in (8, 20, 256):
        assert _described(value, limit) == repr(value)[: limit - 1] + "…"


def test_secrets_next_to_the_cut_are_still_hidden():
    """A secret whose name is shown just before the cut, in a huge string, in a huge dict
    (scrubbed only as far as it is shown) or a pair in a huge list, is not shown, not even
    its start, and the items after the cut are not looked at."""
    secret = "hunter2" * 50
    for at in range(230, 262, 3):
        text = "x" * at + " password=" + secret + " y" * (10 * 2**20)
        assert "hunt" not in _described(text)
        Counted.calls = 0
        tail = [Counted() for _ in range(100_000)]
        head = {f"k{i}": "v" for i in range((at - 1) // 11)}  # 'kNN': 'v', about 11 each
        mapping = {**head, "api_token": secret, "db": "postgresql://u:" + secret + "@h/d",
                   **{i: c for i, c in enumerate(tail)}}  # fmt: skip
        pairs = [*(("k", "v") for _ in range(at // 12)), ("Authorization", "Bearer " + secret),
                 *tail]  # fmt: skip
        for value in (mapping, pairs, [text[:5000], *tail]):
            for shown in (_described(value), safe_repr(scrub(value), 256)):
                assert "hunt" not in shown and len(shown) == 256
        assert Counted.calls < 2000


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(alphabet="ab'\"\\ =:é\x00", max_size=40) | st.binary(max_size=20)
    | st.sampled_from(["password=pw", "Bearer tok", "https://u:pw@h/x"]),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner) | st.tuples(inner)
    | st.dictionaries(st.sampled_from(["a", "token", "b", "api_key"]) | st.integers(), inner,
                      max_size=4)
    | st.frozensets(st.integers() | st.text(max_size=5), max_size=4),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(values, st.integers(8, 400))
def test_a_large_container_is_shown_as_its_items_are_scrubbed_and_cut_one_by_one(value, limit):
    """300 examples: 400 copies of a value (a container too large to scrub at once, so
    scrubbed as it is shown) are shown exactly as the list of the value's own scrubbed repr
    would be, cleaned and cut as before (the repr cut at limit + 1024, cleaned, cut again)."""
    many = [value] * 400
    whole = "[" + ", ".join([repr(scrub(value, (), 1))] * 400) + "]"
    assert safe_repr(scrub(many), limit) == _cleaned_and_cut(whole, limit)
    assert repr(scrub(many)) == whole
    assert safe_repr(many, limit) == _cleaned_and_cut(repr(many), limit)


def _cleaned_and_cut(text: str, limit: int) -> str:
    """What ``safe_repr`` made of a whole repr: cut past the margin, cleaned, cut again."""
    text = text if len(text) <= limit + 1024 else text[: limit + 1023]
    text = redact_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def test_values_recorded_as_redacted_are_hidden_in_text_too(monkeypatch):
    """describe_as() remembers the values it recorded as [REDACTED] (their repr and text),
    the latest 128; hide_known() replaces them in any text."""
    from proctrace._core import arguments

    monkeypatch.setattr(arguments, "hidden", ())
    monkeypatch.setattr(arguments, "_hidden_set", set())
    shown, shown_kw = arguments.describe_as(
        (False, True), False, ("visible", "sk_live_ABCD"), {"token": 123456, "n": 5}, 256, ()
    )
    assert shown == ["'visible'", "[REDACTED]"] and shown_kw == {"token": "[REDACTED]", "n": "5"}
    assert set(arguments.hidden) == {"'sk_live_ABCD'", "sk_live_ABCD", "123456"}
    text = "key 'sk_live_ABCD' then sk_live_ABCD and 123456; visible stays"
    assert arguments.hide_known(text) == (
        "key [REDACTED] then [REDACTED] and [REDACTED]; visible stays"
    )
    for i in range(200):  # one call after another: the latest calls' values are kept
        arguments.describe_as((), False, (), {"password": f"value-{i:04d}"}, 256, ())
    assert len(arguments.hidden) == 128 and "value-0199" in arguments.hidden
    assert "value-0000" not in arguments.hidden and "sk_live_ABCD" not in arguments.hidden
