"""URL grammar: packeteer's parsing table, normalisation, round trips."""

from __future__ import annotations

import pytest

from packeteer_trio import URL, InvalidURL, PacketeerError, UnsupportedScheme

# local:// and fifo:// URLs do not parse on Windows: UnsupportedScheme, as
# test_pipe_windows.py checks there.
posix_url = pytest.mark.posix_only(
    reason="local:// and fifo:// are UnsupportedScheme on Windows"
)

REJECTED = [
    "foo",
    "foo:",
    "foo://",
    "foo:///some/path",
    "foo://123.123.133.123:12",
    "file://",
    "ipc://",
    "anon://anything/here",
    "fifo://",
    "tcp4://[2001:db8:85a3::8a2e:370:7334]",
    "tcp6://192.168.0.1:8080",
    "tcp://127.0.0.1:99999",
    "local:///x?behaviour=sideways",
    "tcp://127.0.0.1:1?behaviour=datagram",
    "tcp://127.0.0.1:abc",
    "tcp://[::1",
    "tcp://::1:80",
    "tcp://user@host:80",
    "tcp://127.0.0.1:80/path",
    "local://host/path",
    "local:///x?mode=999",
    "anon://?blocking=maybe",
    "fifo:///",
    "tcp://bad host:80",
    "local:///" + "x" * 200,
]

ACCEPTED = [
    "tcp://192.168.0.1",
    "TCP4://192.168.0.1:8080",
    "tcp6://[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:80",
    pytest.param("local:///foo", marks=posix_url),
    pytest.param("local://", marks=posix_url),
    pytest.param("local:///%00abstract-name", marks=posix_url),
    "anon://",
    pytest.param("fifo:///foo", marks=posix_url),
    "udp4://127.0.0.1:5",
    pytest.param("local:///x?blocking&behaviour=dgram", marks=posix_url),
]


@pytest.mark.parametrize("text", REJECTED)
def test_rejected(text: str) -> None:
    with pytest.raises(InvalidURL) as info:
        URL.parse(text)
    assert text in str(info.value) or repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PacketeerError)


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_and_round_trips(text: str) -> None:
    url = URL.parse(text)
    again = URL.parse(str(url))
    assert again == url
    assert hash(again) == hash(url)
    assert str(again) == str(url)


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("TCP://127.0.0.1:80", "tcp"),
        pytest.param("LoCaL:///Foo", "local", marks=posix_url),
        ("AnOn://", "anon"),
    ],
)
def test_scheme_case_is_normalised(text: str, scheme: str) -> None:
    url = URL.parse(text)
    assert url.scheme == scheme
    assert str(url).startswith(scheme + "://")


def test_fields() -> None:
    url = URL.parse("TCP6://[2001:0db8::0001]:8080?Some=VALUE&simple&other=tRue#frag")
    assert url.scheme == "tcp6"
    assert url.host == "2001:db8::1"
    assert url.port == 8080
    assert url.path == ""
    assert dict(url.query) == {"some": "value", "simple": "1", "other": "1"}
    assert url.fragment == "frag"
    assert str(url) == "tcp6://[2001:db8::1]:8080?other=1&simple=1&some=value#frag"


def test_booleans_normalise() -> None:
    url = URL.parse("anon://?a=yes&b=no&c=false&d=TRUE&blocking")
    assert dict(url.query) == {"a": "1", "b": "0", "c": "0", "d": "1", "blocking": "1"}


def test_query_is_read_only_and_unknown_keys_are_kept() -> None:
    url = URL.parse("tcp://127.0.0.1:1?whatever=x")
    assert url.query["whatever"] == "x"
    with pytest.raises(TypeError):
        url.query["whatever"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        url.port = 2  # type: ignore[misc]


@posix_url
def test_abstract_name_decodes_nul() -> None:
    url = URL.parse("local:///%00abstract-name")
    assert url.path == "/\0abstract-name"
    assert str(url) == "local:///%00abstract-name"


@posix_url
def test_percent_escapes_in_paths_round_trip() -> None:
    url = URL.parse("local:///tmp/a%20b%3Fc")
    assert url.path == "/tmp/a b?c"
    assert URL.parse(str(url)) == url


def test_query_order_does_not_matter() -> None:
    assert URL.parse("anon://?a=1&b=2") == URL.parse("anon://?b=2&a=1")
    assert len({URL.parse("anon://?a=1&b=2"), URL.parse("anon://?b=2&a=1")}) == 1


@posix_url
def test_behaviour_property() -> None:
    assert URL.parse("local:///x").behaviour == "stream"
    assert URL.parse("local:///x?behaviour=dgram").behaviour == "datagram"
    assert URL.parse("udp4://127.0.0.1:1").behaviour in ("stream", "datagram")


def test_family_mismatch_messages_name_the_url() -> None:
    with pytest.raises(InvalidURL, match=r"tcp4://\[::1\]:5.*IPv6"):
        URL.parse("tcp4://[::1]:5")
    with pytest.raises(InvalidURL, match=r"tcp6://127\.0\.0\.1.*IPv4"):
        URL.parse("tcp6://127.0.0.1")


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(InvalidURL, match=r"unknown scheme 'foo'.*tcp"):
        URL.parse("foo://x")


def test_pipe_is_unsupported_on_posix_and_names_alternative() -> None:
    import sys

    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("pipe:// is supported on Windows")
    with pytest.raises(UnsupportedScheme, match="local://"):
        URL.parse("pipe:///name")


def test_windows_pipe_name_mapping() -> None:
    from packeteer_trio.schemes.pipe import windows_name

    url = URL(scheme="pipe", path="/foo/bar")
    assert windows_name(url) == r"\\.\pipe\foo\bar"


def test_non_string_is_rejected_clearly() -> None:
    with pytest.raises(InvalidURL, match="must be a str"):
        URL.parse(42)  # type: ignore[arg-type]


def test_parse_accepts_url_instances() -> None:
    url = URL.parse("anon://")
    assert URL.parse(url) is url
