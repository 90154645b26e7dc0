"""Credentials hidden where programs keep them (issue #11, item 5): URL passwords, header pairs,
secret attributes of objects, auth tokens, in every recorded repr."""

from __future__ import annotations

import collections
import dataclasses
import types
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctrace._core.arguments import describe
from proctrace._core.redact import _MAX_DEPTH, redact_text, safe_repr, scrub


def shown(value: object, limit: int = 10_000, extra: tuple[str, ...] = ()) -> str:
    """What the span records for ``value`` as an argument."""

    def fn(value):
        pass

    (text,), _ = describe(fn, (value,), {}, limit=limit, extra=extra)
    return text


# --- URLs -------------------------------------------------------------------------------------


def test_a_urls_password_is_hidden_and_the_rest_stays_readable():
    assert shown("postgresql://app:hunter2@db/orders") == "'postgresql://app:[REDACTED]@db/orders'"
    assert shown("mysql+pymysql://rep:p@ss/w#rd@replica:3306/sales?charset=utf8") == (
        "'mysql+pymysql://rep:[REDACTED]@replica:3306/sales?charset=utf8'"
    )  # a raw "@", "/" or "#" in the password is hidden too
    assert shown("smtp://me@example.com:pw@smtp.example.com") == (
        "'smtp://me@example.com:[REDACTED]@smtp.example.com'"
    )
    assert shown("redis://:onlypass@cache:6379/0") == "'redis://:[REDACTED]@cache:6379/0'"


def test_urls_without_a_password_are_left_alone():
    for url in (
        "https://example.com/a?b=c",
        "https://me@example.com/x",
        "https://api.example.com:8443/users?email=me@example.com",
        "ssh://git@github.com:22/org/repo",
    ):
        assert shown(url) == repr(url)


def test_secret_query_parameters_are_hidden_the_others_stay():
    url = "https://api.example.com/v1?user=ann&password=x,y&access_token=t0k&page=2#top"
    assert shown(url) == (
        "'https://api.example.com/v1?user=ann&password=[REDACTED]&access_token=[REDACTED]"
        "&page=2#top'"
    )


def test_urls_are_hidden_in_containers_and_in_reprs_of_objects():
    class Engine:  # shows its URL as SQLAlchemy's engines do
        def __init__(self, url):
            self.url = url

        def __repr__(self):
            return f"Engine({self.url})"

    url = "postgresql://app:hunter2@db/orders"
    assert shown({"dsn": url, "n": [url]}) == (
        "{'dsn': 'postgresql://app:[REDACTED]@db/orders', "
        "'n': ['postgresql://app:[REDACTED]@db/orders']}"
    )
    assert shown(Engine(url)) == "Engine(postgresql://app:[REDACTED]@db/orders)"
    assert scrub(url) == "postgresql://app:[REDACTED]@db/orders"
    assert safe_repr(scrub([Engine(url)]), 200) == (
        "[Engine(postgresql://app:[REDACTED]@db/orders)]"
    )


# --- pairs ------------------------------------------------------------------------------------


def test_values_paired_with_secret_names_are_hidden_the_names_stay():
    headers = [("Authorization", "Bearer abc"), ("Accept", "json")]
    assert shown(headers) == "[('Authorization', [REDACTED]), ('Accept', 'json')]"
    assert repr(scrub(headers)) == "[('Authorization', [REDACTED]), ('Accept', 'json')]"
    assert shown((("X-Api-Key", "k"), ("Host", "h"))) == (
        "(('X-Api-Key', [REDACTED]), ('Host', 'h'))"
    )
    assert shown([["password", 1234], ["user", "ann"]]) == (
        "[['password', [REDACTED]], ['user', 'ann']]"
    )
    assert shown(("token", "t")) == "('token', [REDACTED])"
    assert shown(["token", "user", "note"]) == "['token', 'user', 'note']"  # not a pair
    assert shown({"h": {"authorization": "x"}}) == "{'h': {'authorization': [REDACTED]}}"
    assert shown(["password=x&user=u", "u"]) == "['password=[REDACTED]&user=u', 'u']"  # no name


# --- attributes -------------------------------------------------------------------------------

Creds = collections.namedtuple("Creds", ["user", "api_key"])


@dataclasses.dataclass
class Conn:
    host: str
    token: str


class Client:
    """A custom repr; ``style`` picks how it shows its attributes."""

    def __init__(self, host: Any, api_key: Any, style: str = "named") -> None:
        self.host = host
        self.api_key = api_key
        self.style = style

    def __repr__(self) -> str:
        if self.style == "named":
            return f"Client(host={self.host!r}, api_key={self.api_key!r})"
        if self.style == "bare":
            return f"Client(host={self.host}, api_key={self.api_key})"
        if self.style == "dict":
            return f"Client({ {'host': self.host, 'api_key': self.api_key}!r})"
        return f"<Client {self.host} {self.api_key}>"  # no names at all


class Slotted:
    __slots__ = ("api_key", "host")

    def __init__(self) -> None:
        self.host, self.api_key = "h", "k-secret"

    def __repr__(self) -> str:
        return f"Slotted(host={self.host!r}, api_key={self.api_key!r})"


def test_secret_attributes_are_hidden_the_rest_stays_readable():
    assert shown(Creds("ann", "k1")) == "Creds(user='ann', api_key=[REDACTED])"
    assert shown(types.SimpleNamespace(host="h", token="t")) == (
        "namespace(host='h', token=[REDACTED])"
    )
    assert shown(Conn("h", "t")) == "Conn(host='h', token=[REDACTED])"
    assert shown(Client("db", "sk-123")) == "Client(host='db', api_key=[REDACTED])"
    assert shown(Client("db", "sk-123", "bare")) == "Client(host=db, api_key=[REDACTED])"
    assert shown(Client("db", "sk-123", "dict")) == (
        "Client({'host': 'db', 'api_key': [REDACTED]})"
    )
    assert shown(Client("db", "sk-123", "anon")) == "<Client db [REDACTED]>"
    assert shown(Slotted()) == "Slotted(host='h', api_key=[REDACTED])"  # by the repr's text


def test_secrets_nested_in_attributes_and_named_in_text_are_hidden():
    inner = Client("db", "sk-123", "anon")
    assert shown(Client("outer", inner)) == "Client(host='outer', api_key=[REDACTED])"
    assert shown(Client([inner], "x")) == (
        "Client(host=[<Client db [REDACTED]>], api_key=[REDACTED])"
    )
    text = "Thing(token=Token(kind='jwt', value='abc'), n=1)"
    assert redact_text(text) == "Thing(token=[REDACTED], n=1)"  # a value with brackets, whole
    assert redact_text('{"password": "a\\"b", "user": "u"}') == (
        '{"password": [REDACTED], "user": "u"}'
    )
    extra = ("pin",)
    assert redact_text("Conn(pin='1234', pins=3)", extra) == "Conn(pin=[REDACTED], pins=[REDACTED])"


# --- tokens -----------------------------------------------------------------------------------


def test_bearer_and_basic_tokens_are_hidden_anywhere_in_text():
    assert shown("Authorization: Bearer eyJhbGciOi.J9x") == "'Authorization: Bearer [REDACTED]'"
    assert shown(["curl -H 'Authorization: Basic dXNlcjpwdw=='"]) == (
        "[\"curl -H 'Authorization: Basic [REDACTED]'\"]"
    )
    got = redact_text("got Bearer abc; bearer xyz123")
    assert got == "got Bearer [REDACTED]; bearer [REDACTED]"
    # prose stays prose
    assert redact_text("the bearer of news; Basic usage") == "the bearer of news; Basic usage"


# --- bounds -----------------------------------------------------------------------------------


def test_a_cut_never_parts_a_secret_from_its_name():
    """Text is cleaned before it is cut: a secret that starts before the cut is hidden."""
    url = "postgresql://app:" + "S3CR3T" * 20 + "@db/orders"
    for limit in range(8, 200, 7):
        for value in (url, Conn("h" * 30, "S3CR3T" * 10), "x" * 25 + " password=S3CR3T" * 5):
            text = shown(value, limit)
            assert "S3CR" not in text and len(text) <= limit, (limit, text)


def test_plain_values_and_clean_text_are_unchanged_and_idempotent():
    for value in (1, 2.5, True, None, "abc", "hello world", [1, ("a", "b")], {"k": "v"}):
        assert shown(value) == repr(value)
    plain = {"a": [1, 2], "b": ("user", "ann")}
    assert scrub(plain) is plain
    once = redact_text("Bearer x token=y postgresql://a:b@c ('password', 'p')")
    assert redact_text(once) == once and "[REDACTED]" in once


# --- property ---------------------------------------------------------------------------------

SECRET_KEYS = ("password", "DB_PASSWORD", "passwd", "client_secret", "auth_token", "api_key",
               "X-Api-Key", "apikey", "Authorization", "credentials", "private_key")  # fmt: skip
QUERY_KEYS = ("password", "access_token", "api_key", "client_secret", "sig_token")
PLAIN_KEYS = ("host", "user", "note", "items")
Box = collections.namedtuple("Box", ["item", "label"])


@dataclasses.dataclass
class Holder:
    item: Any
    label: str


class Wrapper:
    def __init__(self, item: Any, label: str, named: bool) -> None:
        self.item, self.label, self.named = item, label, named

    def __repr__(self) -> str:
        if self.named:
            return f"Wrapper(item={self.item!r}, label={self.label!r})"
        return f"Wrapper({self.item!r}, {self.label!r})"


class Planted:
    """Secrets put into a value, and the markers that must still show (visible at their depth)."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.markers: list[str] = []

    def secret(self, draw: Any) -> str:
        s = "S3CR3T" + draw(st.binary(min_size=6, max_size=6)).hex()
        self.secrets.append(s)
        return s

    def marker(self, draw: Any, depth: int) -> str:
        m = "m4rk" + draw(st.binary(min_size=4, max_size=4)).hex()
        if depth <= _MAX_DEPTH:  # deeper than scrubbing looks, nothing is shown
            self.markers.append(m)
        return m


def leaf(draw: Any, p: Planted, d: int) -> Any:
    """A value at scrub depth ``d`` holding a secret."""
    kind = draw(st.integers(0, 10))
    key = draw(st.sampled_from(SECRET_KEYS))
    if kind == 0:
        return {key: p.secret(draw), draw(st.sampled_from(PLAIN_KEYS)): p.marker(draw, d + 1)}
    if kind == 1:
        value = draw(st.sampled_from(["", "Bearer ", "Basic "])) + p.secret(draw)
        pair = draw(st.sampled_from([tuple, list]))
        pairs = [pair((key, value)), pair(("Accept", p.marker(draw, d + 2)))]
        return draw(st.sampled_from([list, tuple]))(draw(st.permutations(pairs)))
    if kind == 2:
        pw = p.secret(draw) + draw(st.sampled_from(["", "/x", ":y", "#z", "%40w", "?q=1"]))
        if draw(st.booleans()):
            pw += "@" + p.secret(draw)
        user, host = p.marker(draw, d), p.marker(draw, d)
        scheme = draw(st.sampled_from(["postgresql", "mysql+pymysql", "redis", "https"]))
        port = draw(st.sampled_from(["", ":5432"]))
        return f"{scheme}://{user}:{pw}@{host}{port}/orders?sslmode=require"
    if kind == 3:
        name = draw(st.sampled_from(QUERY_KEYS))
        host, other = p.marker(draw, d), p.marker(draw, d)
        return f"https://{host}/p?{name}={p.secret(draw)}&q={other}#f"
    if kind == 4:
        return Creds(p.marker(draw, d + 1), p.secret(draw))
    if kind == 5:
        return types.SimpleNamespace(host=p.marker(draw, d + 1), token=p.secret(draw))
    if kind == 6:
        return Conn(p.marker(draw, d + 1), p.secret(draw))
    if kind == 7:
        style = draw(st.sampled_from(["named", "bare", "dict", "anon"]))
        return Client(p.marker(draw, d + 1), p.secret(draw), style)
    if kind == 8:
        m, s = p.marker(draw, d), p.secret(draw)
        return draw(st.sampled_from([
            f"{m} Authorization: Bearer {s}", f"Basic {s} {m}", f"{key}={s}; user={m}",
            f"{m}\n{key}: {s}\n", f'{{"{key}": "{s}", "user": "{m}"}}',
        ]))  # fmt: skip
    if kind == 9:
        return (key, p.secret(draw))
    return [p.marker(draw, d + 1), {"nested": {key: p.secret(draw)}}]


@st.composite
def planted(draw: Any) -> tuple[Any, Planted]:
    """A secret-holding leaf wrapped in 0 to 8 containers (past the scrub depth too), each
    with a marker beside it, dicts and lists sometimes with a second secret-holding leaf."""
    p = Planted()
    kinds = draw(st.lists(st.integers(0, 6), max_size=_MAX_DEPTH + 2))
    value = leaf(draw, p, len(kinds))
    for d, kind in reversed(list(enumerate(kinds))):
        label = p.marker(draw, d + 1)
        more = leaf(draw, p, d + 1) if kind < 2 and draw(st.booleans()) else None
        value = (
            {draw(st.sampled_from(PLAIN_KEYS)): value, "label": label, **dict(more=more)},
            [value, label, more],
            (label, value),
            Box(value, label),
            types.SimpleNamespace(item=value, label=label),
            Holder(value, label),
            Wrapper(value, label, draw(st.booleans())),
        )[kind]  # fmt: skip
    return value, p


def check(texts: list[str], p: Planted, markers: bool = True) -> None:
    joined = "\n".join(texts)
    assert "S3CR" not in joined, joined
    for s in p.secrets:
        assert s[6:] not in joined, (s, joined)
    if markers:
        missing = [m for m in p.markers if m not in joined]
        assert not missing, (missing, joined)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted())
def test_no_planted_secret_survives_describe_or_a_log_value(case):
    """500 examples: a secret anywhere in nested dicts, pair lists, URLs, namedtuples,
    namespaces, dataclasses and objects with secret attributes never shows in ``describe()``
    (positionally and by keyword), ``safe_repr(scrub(x))`` (log values) nor ``repr(scrub(x))``,
    while every marker beside it within the scrub depth does; the output is a fixed point."""
    value, p = case

    def fn(value, *rest, **kwargs):
        pass

    args, kwargs = describe(fn, (value, value), {"data": value}, limit=100_000)
    log_value = safe_repr(scrub(value), 100_000)
    check([*args, *kwargs.values(), log_value], p)
    assert redact_text(log_value) == log_value
    check([repr(scrub(value))], p)  # the structural layer alone hides them too


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted(), st.integers(8, 400))
def test_no_planted_secret_survives_any_cut(case, limit):
    """300 examples: with any ``max_repr``, not even the start of a secret is shown."""
    value, p = case

    def fn(value, **kwargs):
        pass

    args, kwargs = describe(fn, (value,), {"data": value}, limit=limit)
    texts = [*args, *kwargs.values(), safe_repr(scrub(value), limit)]
    check(texts, p, markers=False)
    assert all(len(t) <= limit for t in texts)
