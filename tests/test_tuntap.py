"""tun:// and tap://: URL rules here, device scenarios in a private netns.

Everything that creates an interface runs in a subprocess that first calls
``unshare(CLONE_NEWNET)`` (see ``_tuntap_netns.py``), so no interface,
address or packet of these tests ever exists in the host's namespace. They
are skipped, with the reason, where that or ``/dev/net/tun`` is not allowed.
"""

from __future__ import annotations

import errno
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import packeteer_trio as p7r
from packeteer_trio import URL, InvalidURL, UnsupportedScheme

LINUX = sys.platform == "linux"
HELPER = Path(__file__).with_name("_tuntap_netns.py")
ROOT = Path(__file__).resolve().parent.parent
SKIP = 77

linux_only = pytest.mark.skipif(not LINUX, reason="tun/tap is Linux-only")


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
        timeout=60,
    )


@functools.cache
def _why_not() -> str | None:
    """Why the namespace scenarios cannot run here; None if they can."""
    if not LINUX:
        return "tun/tap is Linux-only"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (no tun module, or a container without it)"
    result = _run_helper("probe")
    if result.returncode == SKIP:
        return result.stdout.strip()
    if result.returncode != 0:
        return f"a private network namespace with a tun failed: {result.stderr}"
    return None


SCENARIOS = [
    "tun_udp",
    "tun_pi",
    "tun_truncation",
    "tap_frames",
    "kernel_names",
    "close_wakes_receiver",
    "down_and_deleted",
    "no_fd_leak",
    "no_privilege",
    "scheduler_reads",
    # The anyio face, on both of anyio's backends.
    "anyio_tun:asyncio",
    "anyio_tun:trio",
    "anyio_tap_deleted:asyncio",
    "anyio_tap_deleted:trio",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_in_private_netns(scenario: str) -> None:
    """Each scenario's docstring-free story is in _tuntap_netns.py."""
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    result = _run_helper(scenario)
    if result.returncode == SKIP:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stderr or result.stdout


# --- URL rules: no device is touched --------------------------------------


@linux_only
@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("tun:///tun7", "tun:///tun7"),
        ("TAP:///br-tap0", "tap:///br-tap0"),
        ("tun://", "tun://"),
        ("tun:///", "tun://"),
        ("tun:///vpn%25d", "tun:///vpn%25d"),
        (
            "tun:///x?MTU=1400&txqueuelen=0&pi=yes",
            "tun:///x?mtu=1400&pi=1&txqueuelen=0",
        ),
        ("tap:///abcdefghijklmno", "tap:///abcdefghijklmno"),  # 15 bytes: the limit
    ],
)
def test_canonical_urls(text: str, canonical: str) -> None:
    url = URL.parse(text)
    assert str(url) == canonical
    assert URL.parse(str(url)) == url


@linux_only
@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("tun:///abcdefghijklmnop", "at most 15"),  # 16 bytes
        ("tap:///ééééééééé", "at most 15"),  # 9 characters, 18 bytes
        ("tun://host/x", "not a host"),
        ("tun://:5/x", "not a host"),
        ("tun:///a/b", "not a valid interface name"),
        ("tun:///a:b", "not a valid interface name"),
        ("tun:///a%20b", "not a valid interface name"),
        ("tun:///..", "not a valid interface name"),
        ("tun:///a%00", "not a valid interface name"),
        ("tun:///%C3%A0", "not a valid interface name"),  # 'à' holds byte 0xA0
        ("tun:///a%25s", "single %d"),
        ("tun:///a%25d%25d", "single %d"),
        ("tun:///x?mtu=big", "mtu='big'"),
        ("tun:///x?mtu=67", "68-65535"),
        ("tun:///x?mtu=65536", "68-65535"),
        ("tun:///x?txqueuelen=-1", "txqueuelen"),
        ("tun:///x?pi=maybe", "pi='maybe'"),
        ("tun:///x?behaviour=stream", "no stream behaviour"),
    ],
)
def test_bad_urls(text: str, complaint: str) -> None:
    with pytest.raises(
        InvalidURL, match=r"interface|mtu|txqueuelen|pi|behaviour"
    ) as info:
        URL.parse(text)
    assert complaint in str(info.value)
    assert repr(text) in str(info.value)  # the message names the URL


@linux_only
@pytest.mark.trio
async def test_wrong_verbs() -> None:
    with pytest.raises(InvalidURL, match="connect_datagram"):
        await p7r.connect("tun:///x")
    with pytest.raises(InvalidURL, match="connect_datagram"):
        await p7r.listen("tap:///x")
    with pytest.raises(InvalidURL, match="cannot be bound"):
        await p7r.open_datagram("tun:///x")
    with pytest.raises(InvalidURL, match="no local address"):
        await p7r.connect_datagram("tun:///x", local="tun:///y")


@linux_only
@pytest.mark.trio
async def test_missing_clone_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from packeteer_trio.schemes import tuntap

    missing = tmp_path / "no-such-tun"
    monkeypatch.setattr(tuntap, "CLONE_DEVICE", str(missing))
    with pytest.raises(FileNotFoundError) as info:
        await p7r.connect_datagram("tun:///p7rmissing")
    message = str(info.value)
    assert info.value.errno == errno.ENOENT
    assert "tun:///p7rmissing" in message and str(missing) in message
    assert "modprobe tun" in message


def test_unsupported_elsewhere() -> None:
    """On any other platform the schemes exist but say where they work."""
    code = (
        "import sys, trio, anyio\n"
        # Linux poses as macOS; elsewhere the real platform is elsewhere
        # (a Windows Python posing as macOS would lack os.pread).
        "if sys.platform == 'linux': sys.platform = 'darwin'\n"
        "from packeteer_trio import URL, UnsupportedScheme\n"
        "for text in ('tun:///x', 'tap://'):\n"
        "    try:\n"
        "        URL.parse(text)\n"
        "    except UnsupportedScheme as exc:\n"
        "        assert 'only on Linux' in str(exc) and text in str(exc), exc\n"
        "    else:\n"
        "        raise SystemExit(text + ' parsed')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr or result.stdout
    assert issubclass(UnsupportedScheme, InvalidURL)


def test_packet_channel_is_a_trio_channel() -> None:
    assert issubclass(p7r.PacketChannel, trio.abc.Channel)
