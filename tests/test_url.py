"""URL grammar: packeteer's parsing table, normalisation, round trips."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from packeteer_trio import URL, InvalidURL, PacketeerError, Query, UnsupportedScheme
from packeteer_trio._sockinfo import url_from_sockaddr
from packeteer_trio.schemes import _inet

LINUX = sys.platform.startswith("linux")

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
    # ports too long for int() (over 4300 digits) are out of range, not a crash
    "tcp://127.0.0.1:" + "9" * 4301,
    "udp://127.0.0.1:" + "1" * 100_000,
    "tcp://127.0.0.1:000099999",
    # what looks like an IPv4 literal and is not one, in every inet scheme
    "tcp4://256.0.0.1:80",
    "tcp://256.0.0.1:80",
    "tcp6://256.0.0.1:80",
    "udp4://1.2.3.256:53",
    "udp://999.999.999.999:53",
    "tcp://1.2.3.4.5:80",
    "tcp://010.0.0.1:80",
    "tcp://127.1:80",
    "tcp://0x7f000001:80",
    "tcp://0x7f.0.0.1:80",
    "tcp://2130706433:80",
    "tcp://host.123:80",
    "tls+tcp://256.0.0.1:443",
    # IPv6 zones
    "tcp6://[fe80::1%25]:80",
    "tcp6://[fe80::1%]:80",
    "tcp4://[fe80::1%25lo]:80",
    "tcp6://[fe80::1%25a%25b]:80",
    "tcp6://[fe80::1%25eth%2F0]:80",
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
    "tcp6://[fe80::1%25lo]:80",
    "udp6://[fe80::1%25eth0.100]:53",
    "tcp://[fe80::1%253]:80",
    "tcp://[::1%25lo]:80",
    "tcp6://[fe80::1%25Wi-Fi]:80",
    "tcp://0.0.0.0:1",
    "tcp://255.255.255.255:1",
    "tcp://1e100.net:80",
    "tcp://a1.b2-c:80",
    "tcp://127.0.0.1:00080",
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


def test_huge_port_is_invalid_url_naming_the_url() -> None:
    """int() refuses over 4300 digits with a plain ValueError: never reached."""
    text = "tcp://127.0.0.1:" + "9" * 4301
    with pytest.raises(InvalidURL, match="out of range 0-65535") as info:
        URL.parse(text)
    assert text in str(info.value)
    assert "4301 digits" in str(info.value)
    assert URL.parse("tcp://127.0.0.1:" + "0" * 5000 + "80").port == 80


@pytest.mark.parametrize(
    "host", ["256.0.0.1", "1.2.3.256", "127.1", "0x7f000001", "2130706433"]
)
@pytest.mark.parametrize("scheme", ["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"])
def test_bad_ipv4_literal_is_invalid(scheme: str, host: str) -> None:
    with pytest.raises(InvalidURL, match=f"{host}.*not a valid IPv4 address"):
        URL.parse(f"{scheme}://{host}:80")


def test_ipv6_zone_is_decoded_and_round_trips() -> None:
    url = URL.parse("tcp6://[FE80::0001%25Eth0]:80")
    assert url.host == "fe80::1%Eth0"  # the address canonical, the zone as is
    assert str(url) == "tcp6://[fe80::1%25Eth0]:80"
    assert URL.parse(str(url)) == url
    # A bare "%" (not RFC 6874, but common) means the same.
    assert URL.parse("tcp6://[fe80::1%Eth0]:80") == url
    # The zone is percent-decoded, and escaped again where needed.
    odd = URL.parse("tcp6://[fe80::1%25a%20b]:80")
    assert odd.host == "fe80::1%a b"
    assert str(odd) == "tcp6://[fe80::1%25a%20b]:80"
    assert URL.parse(str(odd)) == odd


@pytest.mark.trio
async def test_resolved_sockaddr_carries_the_scope_id() -> None:
    url = URL.parse("tcp6://[fe80::1%255]:80")
    got = await _inet.resolve(url, socket.SOCK_STREAM)
    assert got == [(socket.AF_INET6, ("fe80::1", 80, 0, 5))]
    lo = "lo" if LINUX else "lo0"
    try:
        index = socket.if_nametoindex(lo)
    except OSError:  # pragma: no cover - no loopback of that name
        pytest.skip(f"no interface {lo!r}")
    url = URL.parse(f"udp6://[::1%25{lo}]:53")
    got = await _inet.resolve(url, socket.SOCK_DGRAM)
    assert got == [(socket.AF_INET6, ("::1", 53, 0, index))]
    # and back: a sockaddr's scope id becomes the URL's zone
    back = url_from_sockaddr(socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 53, 0, index))
    assert back == URL.parse(f"udp6://[::1%25{lo}]:53")


@pytest.mark.trio
async def test_unknown_zone_is_an_oserror_naming_the_url() -> None:
    url = URL.parse("tcp6://[fe80::1%25no-such-if9]:80")
    with pytest.raises(OSError, match=r"no-such-if9") as info:
        await _inet.resolve(url, socket.SOCK_STREAM)
    assert info.value.errno == errno.ENODEV
    assert str(url) in str(info.value)


@pytest.mark.skipif(not LINUX, reason="network namespaces are Linux-only")
def test_zone_connects_and_binds_link_local_in_a_private_netns() -> None:
    """fe80::1 on lo inside a namespace of its own: the kernel refuses a
    link-local address without its zone, so this round trip proves the zone
    reaches the socket (see _zone_netns.py)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    helper = Path(__file__).with_name("_zone_netns.py")
    result = subprocess.run(
        [sys.executable, str(helper)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stderr or result.stdout


def test_replace_keeps_what_is_not_given_and_port_none_removes_the_port() -> None:
    url = URL.parse("tcp://example.com:80/?nodelay=1#frag")
    assert url.replace(host="a.example") == URL.parse(
        "tcp://a.example:80/?nodelay=1#frag"
    )
    assert url.replace(port=None).port is None
    assert url.replace().port == 80
    changed = url.replace(query={"x": "1"}, fragment="")
    assert isinstance(changed.query, Query) and dict(changed.query) == {"x": "1"}
    assert str(changed) == "tcp://example.com:80?x=1"
    with pytest.raises(TypeError):
        url.replace(prot=1)  # type: ignore[call-arg]  # a misspelt field is refused
