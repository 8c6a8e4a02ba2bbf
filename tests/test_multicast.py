"""udp:// multicast and broadcast options: the URL rules here, the traffic
in two private network namespaces joined by a veth pair
(tests/_multicast_netns.py, Linux as root), never on the host's interfaces.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from packeteer_trio import URL, InvalidURL

from .conftest import LINUX

HELPER = Path(__file__).with_name("_multicast_netns.py")
ROOT = Path(__file__).resolve().parent.parent
SKIP = 77


def _run_helper(scenario: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, str(HELPER), scenario],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@functools.cache
def _why_not() -> str | None:
    """Why the namespace scenarios cannot run here; None if they can."""
    result = _run_helper("probe")
    if result.returncode == SKIP:
        return result.stdout.strip()
    assert result.returncode == 0, f"setting up the veth pair failed: {result.stderr}"
    return None


@pytest.mark.linux_only(reason="network namespaces and veth pairs are Linux-only")
@pytest.mark.parametrize(
    "scenario",
    [
        "ipv4_groups",  # joined receivers get it, the others do not; iface=
        "ipv4_loop",  # loop=0 and loop=1 on this host's own receivers
        "ipv4_ttl",  # ttl= as the packets carry it on the wire
        "ipv4_broadcast",  # broadcast=1 to the subnet's broadcast address
        "ipv6_groups",  # ff02:: and ff05:: groups on the veth, hop limit
        "open_errors",  # what only opening finds out names the URL, no fd leak
    ],
)
def test_in_two_namespaces(scenario: str) -> None:
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    result = _run_helper(scenario)
    if result.returncode == SKIP:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stderr or result.stdout


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("udp://:5000?join=239.1.2.3", "udp://:5000?join=239.1.2.3"),
        (
            "udp4://0.0.0.0:5000?JOIN=239.1.2.3,239.1.2.3,224.0.0.251&iface=eth0",
            "udp4://0.0.0.0:5000?iface=eth0&join=239.1.2.3,224.0.0.251",
        ),
        (
            "udp6://[::]:5000?join=FF02:0::1:3&iface=eth0&ttl=5&loop=no",
            "udp6://[::]:5000?iface=eth0&join=ff02::1:3&loop=0&ttl=5",
        ),
        ("udp://:5000?join=ff05::1234", "udp://:5000?join=ff05::1234"),
        ("udp4://0.0.0.0:0?broadcast", "udp4://0.0.0.0:0?broadcast=1"),
        ("udp://:0?iface=7", "udp://:0?iface=7"),
        ("udp://239.1.2.3:5000?iface=192.0.2.1&ttl=0", None),
        ("udp6://[ff02::1]:5000?iface=eth0&ttl=255&loop=1", None),
    ],
)
def test_canonical_urls(text: str, canonical: str | None) -> None:
    url = URL.parse(text)
    if canonical is not None:
        assert str(url) == canonical
    assert URL.parse(str(url)) == url


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("udp://:5000?join=192.0.2.1", "'192.0.2.1' is not a multicast group"),
        ("udp://:5000?join=239.1.2.3,10.0.0.1", "'10.0.0.1' is not a multicast"),
        ("udp://:5000?join=group", "'group' is not a multicast group"),
        ("udp://:5000?join=ff02::1%25eth0", "without a zone: say the interface"),
        ("udp://:5000?join=", "'' is not a multicast group"),
        ("udp://:5000?join=239.1.2.3,ff05::1", "of one family"),
        ("udp4://:5000?join=ff05::1", "IPv6 group but the socket is IPv4"),
        ("udp6://:5000?join=239.1.2.3", "IPv4 group but the socket is IPv6"),
        ("udp://[::]:5000?join=239.1.2.3", "IPv4 group but the socket is IPv6"),
        ("udp://:5000?join=ff02::1:3", "link-local group: say on which interface"),
        ("udp://:5000?join=ff01::1", "interface-local group"),
        ("udp://:5000?ttl=256", "ttl=256 is out of range 0-255"),
        ("udp://:5000?ttl=-1", "ttl='-1' is not a number"),
        ("udp://:5000?ttl=lots", "ttl='lots' is not a number"),
        ("udp://:5000?loop=2", "loop='2' is not a boolean"),
        ("udp://:5000?broadcast=maybe", "broadcast='maybe' is not a boolean"),
        ("udp6://[::]:5000?broadcast=1", "IPv6 has no broadcast"),
        ("udp://:5000?join=ff05::1&broadcast=1", "IPv6 has no broadcast"),
        ("udp://:5000?iface=fe80::1", "named by its name, its index"),
        ("udp6://[::]:5000?iface=192.0.2.1", "is an IPv4 address"),
        ("udp://:5000?iface=", "not an interface name"),
    ],
)
def test_bad_urls(text: str, complaint: str) -> None:
    with pytest.raises(InvalidURL) as info:
        URL.parse(text)
    assert complaint in str(info.value)
    assert repr(text) in str(info.value)  # the message names the URL


@pytest.mark.skipif(
    LINUX or sys.platform.startswith("freebsd") or sys.platform == "win32",
    reason="Linux, FreeBSD and Windows join IPv4 groups by interface index",
)
def test_ipv4_interface_by_name_needs_an_address_elsewhere() -> None:
    with pytest.raises(InvalidURL, match="by the interface's IPv4 address"):
        URL.parse("udp4://:5000?join=239.1.2.3&iface=en0")
    URL.parse("udp4://:5000?join=239.1.2.3&iface=192.0.2.10")


def test_tcp_ignores_the_udp_options() -> None:
    """Unknown keys are kept and ignored (SPEC §1): these are udp's only."""
    url = URL.parse("tcp://:80?join=nothing&ttl=lots")
    assert url.query["join"] == "nothing"
