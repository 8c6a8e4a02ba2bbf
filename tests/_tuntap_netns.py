"""tun/tap scenarios, each run in a private network namespace of its own.

``python tests/_tuntap_netns.py SCENARIO`` first calls ``unshare(CLONE_NEWNET)``
so that every interface, address, route and packet below exists only inside
a namespace that dies with this process: nothing can reach the host's
network. Exit status: 0 passed, 77 cannot run here (the reason on stdout),
anything else failed (the traceback on stderr). Driven by test_tuntap.py.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import trio
import trio.testing

assert sys.platform == "linux", "tun/tap and network namespaces are Linux-only"

CLONE_NEWNET = 0x40000000
SKIP = 77
SIOCSIFFLAGS, SIOCGIFFLAGS = 0x8914, 0x8913
SIOCSIFADDR, SIOCSIFNETMASK, SIOCGIFINDEX = 0x8916, 0x891C, 0x8933
SIOCGIFMTU, SIOCGIFTXQLEN = 0x8921, 0x8942
IFF_UP = 0x1
CAP_NET_ADMIN = 12
ETH_P_TEST = 0x88B5  # IEEE "local experimental" EtherType: nobody else's frames

LOCAL, PEER = "10.200.0.1", "10.200.0.2"  # exist only inside this namespace
PEER_PORT = 9999

_libc = ctypes.CDLL(None, use_errno=True)


def skip(reason: str) -> None:
    print(reason)
    sys.exit(SKIP)


def enter_private_netns() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        skip(f"unshare(CLONE_NEWNET) failed: {os.strerror(code)} (needs CAP_SYS_ADMIN)")
    if not os.path.exists("/dev/net/tun"):
        skip("/dev/net/tun is missing")
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        skip(f"cannot open /dev/net/tun: {exc.strerror}")


# --- interface plumbing by ioctl (no iproute2) --------------------------------


def _ifreq(name: str, fmt: str = "", *values: object) -> bytes:
    return struct.pack(f"16s{fmt}", name.encode(), *values).ljust(40, b"\0")


def _ioctl(request: int, ifreq: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return fcntl.ioctl(sock, request, ifreq)


def _ifreq_inet(name: str, address: str) -> bytes:
    sockaddr = struct.pack(
        "H2s4s8s", socket.AF_INET, b"", socket.inet_aton(address), b""
    )
    return _ifreq(name, "16s", sockaddr)


def set_address(name: str, address: str, netmask: str) -> None:
    """SIOCSIFADDR + SIOCSIFNETMASK: also adds the subnet's route via *name*."""
    _ioctl(SIOCSIFADDR, _ifreq_inet(name, address))
    _ioctl(SIOCSIFNETMASK, _ifreq_inet(name, netmask))


def bring_up(name: str) -> None:
    (flags,) = struct.unpack_from("H", _ioctl(SIOCGIFFLAGS, _ifreq(name)), 16)
    _ioctl(SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP))


def if_flags(name: str) -> int:
    return int(struct.unpack_from("H", _ioctl(SIOCGIFFLAGS, _ifreq(name)), 16)[0])


def if_int(request: int, name: str) -> int:
    return int(struct.unpack_from("i", _ioctl(request, _ifreq(name)), 16)[0])


def if_exists(name: str) -> bool:
    try:
        _ioctl(SIOCGIFINDEX, _ifreq(name))
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


def counters(name: str) -> tuple[int, int]:
    """``(rx_packets, tx_packets)`` from /proc/net/dev, which shows *our* netns."""
    with open("/proc/net/dev") as file:
        for line in file:
            label, _, numbers = line.partition(":")
            if label.strip() == name:
                fields = numbers.split()
                return int(fields[1]), int(fields[9])
    raise AssertionError(f"{name} is not in /proc/net/dev")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def drop_cap_net_admin() -> None:
    """Remove CAP_NET_ADMIN from this thread's effective and permitted sets."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        skip(f"capget failed: {os.strerror(ctypes.get_errno())}")
    mask = ~(1 << CAP_NET_ADMIN) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    if _libc.capset(ctypes.byref(header), data) != 0:
        skip(f"capset failed: {os.strerror(ctypes.get_errno())}")


# --- packets ------------------------------------------------------------------


def ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp4_packet(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet with a correct header checksum (UDP checksum 0: none)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0x1234,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    checksum = ip_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + udp


async def receive_matching(
    chan: trio.abc.ReceiveChannel[bytes], wanted: Callable[[bytes], bool]
) -> bytes:
    """The first packet *wanted* accepts; skips the kernel's own chatter
    (IPv6 router solicitations, MLD reports) that a fresh interface sends."""
    with trio.fail_after(5):
        while True:
            packet = await chan.receive()
            if wanted(packet):
                return packet


def is_udp_to_peer(packet: bytes) -> bool:
    return (
        len(packet) >= 28
        and packet[0] >> 4 == 4
        and packet[9] == socket.IPPROTO_UDP
        and packet[16:20] == socket.inet_aton(PEER)
    )


# --- scenarios ----------------------------------------------------------------


async def probe() -> None:
    import packeteer_trio as p7r

    async with await p7r.connect_datagram("tun://"):
        pass


async def _udp_roundtrip(url: str, pi: bool) -> None:
    import packeteer_trio as p7r

    async with await p7r.connect_datagram(url) as chan:
        name = chan.url.path[1:]
        assert if_flags(name) & IFF_UP, "the interface was not brought up"
        set_address(name, LOCAL, "255.255.255.0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCAL, 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            payload = b"hello through the tun " + os.urandom(8)
            sock.sendto(payload, (PEER, PEER_PORT))

            header = b"\0\0\x08\x00"  # packet info: flags 0, EtherType IPv4
            if pi:
                raw = await receive_matching(
                    chan, lambda p: p[:4] == header and is_udp_to_peer(p[4:])
                )
                packet = raw[4:]
            else:
                packet = await receive_matching(chan, is_udp_to_peer)

            # The exact IPv4 packet the kernel routed into the tun.
            assert packet[0] == 0x45, packet[:1].hex()  # version 4, no options
            (total_length,) = struct.unpack_from("!H", packet, 2)
            assert total_length == len(packet) == 20 + 8 + len(payload)
            assert packet[9] == socket.IPPROTO_UDP
            assert ip_checksum(packet[:20]) == 0, "bad IPv4 header checksum"
            assert packet[12:16] == socket.inet_aton(LOCAL)
            assert packet[16:20] == socket.inet_aton(PEER)
            sport, dport, udp_length = struct.unpack_from("!HHH", packet, 20)
            assert (sport, dport, udp_length) == (port, PEER_PORT, 8 + len(payload))
            assert packet[28:] == payload

            # A crafted reply from the "peer" comes out of the ordinary socket.
            answer = b"reply " + payload
            reply = udp4_packet(PEER, PEER_PORT, LOCAL, port, answer)
            await chan.send(header + reply if pi else reply)
            with trio.fail_after(5):
                await trio.lowlevel.wait_readable(sock)
            data, sender = sock.recvfrom(2048)
            assert (data, sender) == (answer, (PEER, PEER_PORT))


async def tun_udp() -> None:
    await _udp_roundtrip("tun:///p7rtun0?mtu=1400&txqueuelen=321", pi=False)
    # MTU and queue length were set by ioctl while open; the device is gone now.
    assert not if_exists("p7rtun0")
    import packeteer_trio as p7r

    async with await p7r.connect_datagram("tun:///p7rtun1?mtu=1280&txqueuelen=77"):
        assert if_int(SIOCGIFMTU, "p7rtun1") == 1280
        assert if_int(SIOCGIFTXQLEN, "p7rtun1") == 77


async def tun_pi() -> None:
    await _udp_roundtrip("tun:///p7rpi?pi=1", pi=True)


async def tun_truncation() -> None:
    import packeteer_trio as p7r

    async with await p7r.connect_datagram("tun:///p7rtrunc") as chan:
        set_address("p7rtrunc", LOCAL, "255.255.255.0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"x" * 100, (PEER, PEER_PORT))
            sock.sendto(b"small", (PEER, PEER_PORT))
            # Every packet longer than 50 bytes is an error, never cut short;
            # the channel stays usable and the next packet comes whole.
            failures = 0
            with trio.fail_after(5):
                while True:
                    try:
                        packet = await chan.receive(max_size=50)
                    except OSError as exc:
                        assert exc.errno == errno.EMSGSIZE, exc
                        assert "tun:///p7rtrunc" in str(exc)
                        assert "max_size=50" in str(exc)
                        failures += 1
                        continue
                    if is_udp_to_peer(packet):
                        break
            assert packet[28:] == b"small"
            assert failures >= 1


async def tap_frames() -> None:
    import packeteer_trio as p7r

    async with await p7r.connect_datagram("tap:///p7rtap0") as chan:
        assert str(chan.url) == "tap:///p7rtap0"
        name = "p7rtap0"
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        with raw:
            raw.bind((name, ETH_P_TEST))
            raw.setblocking(False)
            mac = raw.getsockname()[4]
            rx_before, tx_before = counters(name)

            # Written to the channel: the kernel receives it on the interface.
            frame = (
                mac + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ETH_P_TEST)
            ) + b"frame into the kernel".ljust(46, b".")
            await chan.send(frame)
            with trio.fail_after(5):
                await trio.lowlevel.wait_readable(raw)
            assert raw.recv(2048) == frame
            rx_after, _ = counters(name)
            assert rx_after >= rx_before + 1

            # Sent out of the interface by the kernel: the channel reads it.
            out = (
                b"\x02\x00\x00\x00\x00\x02" + mac + struct.pack("!H", ETH_P_TEST)
            ) + b"frame out of the kernel".ljust(46, b".")
            raw.send(out)
            got = await receive_matching(chan, lambda f: f[12:14] == out[12:14])
            assert got == out
            _, tx_after = counters(name)
            assert tx_after >= tx_before + 1


async def kernel_names() -> None:
    import re

    import packeteer_trio as p7r

    for url, pattern in [
        ("tun://", r"tun:///tun\d+"),
        ("tun:///", r"tun:///tun\d+"),
        ("tap://?mtu=1300", r"tap:///tap\d+\?mtu=1300"),
        ("tun:///p7r%25d", r"tun:///p7r\d+"),
    ]:
        async with await p7r.connect_datagram(url) as chan:
            assert re.fullmatch(pattern, str(chan.url)), (url, str(chan.url))
            name = chan.url.path[1:]
            assert if_exists(name)
            assert if_flags(name) & IFF_UP
            # The url reopens the same device (after this one is closed).
        assert not if_exists(name), "a non-persistent interface outlived its fd"


async def close_wakes_receiver() -> None:
    import packeteer_trio as p7r

    chan = await p7r.connect_datagram("tun:///p7rclose")
    result: list[BaseException] = []

    async def receiver() -> None:
        try:
            while True:  # a fresh interface's own IPv6 chatter may come first
                await chan.receive()
        except trio.ClosedResourceError as exc:
            result.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            try:
                await chan.receive()
            except trio.BusyResourceError:
                pass
            else:
                raise AssertionError("a second receiver got no BusyResourceError")
            await chan.aclose()
    assert len(result) == 1 and "tun:///p7rclose" in str(result[0])
    assert not if_exists("p7rclose")
    for action in (chan.receive(), chan.send(b"\x45" + b"\0" * 19)):
        try:
            await action
        except trio.ClosedResourceError:
            pass
        else:
            raise AssertionError("no ClosedResourceError after close")
    await chan.aclose()  # closing twice is fine
    assert chan.fileno() == -1


def delete_link(name: str) -> None:
    """What ``ip link del NAME`` does: RTM_DELLINK over rtnetlink."""
    index = socket.if_nametoindex(name)
    rtm_dellink, request_ack = 17, 0x1 | 0x4
    message = struct.pack("=IHHII", 32, rtm_dellink, request_ack, 1, 0)
    message += struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(message)
        (error,) = struct.unpack_from("=i", nl.recv(4096), 16)
    assert error == 0, os.strerror(-error)


async def down_and_deleted() -> None:
    import packeteer_trio as p7r

    async with await p7r.connect_datagram("tun:///p7rgone") as chan:
        packet = udp4_packet(PEER, PEER_PORT, LOCAL, 1, b"x")
        _ioctl(SIOCSIFFLAGS, _ifreq("p7rgone", "H", if_flags("p7rgone") & ~IFF_UP))
        try:
            await chan.send(packet)
        except OSError as exc:
            assert exc.errno == errno.EIO and "interface down" in str(exc), exc
        else:
            raise AssertionError("sending on a downed interface succeeded")
        bring_up("p7rgone")
        await chan.send(packet)  # usable again

        # Deleted under us (ip link del): a waiting receive wakes, broken.
        caught: list[BaseException] = []

        async def receiver() -> None:
            try:
                while True:
                    await chan.receive()
            except trio.BrokenResourceError as exc:
                caught.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver)
                await trio.testing.wait_all_tasks_blocked()
                delete_link("p7rgone")
        assert "deleted" in str(caught[0]) and "tun:///p7rgone" in str(caught[0])
        try:
            await chan.send(packet)
        except trio.BrokenResourceError:
            pass
        else:
            raise AssertionError("sending on a deleted interface succeeded")


async def no_fd_leak() -> None:
    import packeteer_trio as p7r

    before = open_fds()
    for index in range(10):
        for url in (f"tun:///p7rleak{index}", "tap://"):
            chan = await p7r.connect_datagram(url)
            with trio.move_on_after(0.01):  # cancelled while waiting
                await receive_matching(chan, lambda p: False)
            await chan.aclose()
    # Failures close what they opened: a name that is no tun device, one
    # that is busy, and a value the kernel refuses.
    try:
        await p7r.connect_datagram("tun:///lo")
    except OSError as exc:
        assert exc.errno == errno.EINVAL and "tun:///lo" in str(exc), exc
        assert "not a tun interface" in str(exc), exc
    else:
        raise AssertionError("opening lo as a tun succeeded")
    async with await p7r.connect_datagram("tun:///p7rbusy"):
        try:
            await p7r.connect_datagram("tun:///p7rbusy")
        except OSError as exc:
            assert exc.errno == errno.EBUSY and "tun:///p7rbusy" in str(exc), exc
        else:
            raise AssertionError("a second open of a busy tun succeeded")
    try:
        await p7r.connect_datagram("tap:///p7rbig?mtu=65535")
    except OSError as exc:
        assert exc.errno == errno.EINVAL and "mtu=65535" in str(exc), exc
        assert not if_exists("p7rbig")
    # (if the kernel accepted it, fine: the fd count still tells)
    assert open_fds() == before, (before, open_fds())


async def no_privilege() -> None:
    import packeteer_trio as p7r

    try:
        await p7r.connect_datagram("tun:///p7rnocap")
    except PermissionError as exc:
        assert "tun:///p7rnocap" in str(exc) and "CAP_NET_ADMIN" in str(exc), exc
    else:
        raise AssertionError("created a tun without CAP_NET_ADMIN")
    assert not if_exists("p7rnocap")


async def scheduler_reads() -> None:
    import packeteer_trio as p7r
    from packeteer_trio.scheduler import Events, open_scheduler

    async with await p7r.connect_datagram("tun:///p7rsched") as chan:
        set_address("p7rsched", LOCAL, "255.255.255.0")
        seen = trio.Event()

        async def on_read(now: float, events: Events, conn: object) -> None:
            packet = await chan.receive()
            if is_udp_to_peer(packet):
                seen.set()

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with trio.fail_after(5):
                async with open_scheduler() as sched:
                    sched.register_connector(Events.READ, chan, on_read)
                    sock.sendto(b"via the scheduler", (PEER, PEER_PORT))
                    await seen.wait()
                    sched.unregister_connector(chan)


# --- the anyio face (run under anyio's asyncio and trio backends) -------------


async def anyio_receive_matching(
    chan: anyio.abc.UnreliableObjectReceiveStream[bytes],
    wanted: Callable[[bytes], bool],
) -> bytes:
    with anyio.fail_after(5):
        while True:
            packet = await chan.receive()
            if wanted(packet):
                return packet


async def anyio_tun() -> None:
    """A tun through the anyio face: packets both ways, errors anyio's."""
    from packeteer_trio import InvalidURL
    from packeteer_trio import anyio_compat as pa

    for verb in (pa.open_datagram, pa.connect, pa.listen):
        try:
            await verb("tun:///p7rany")
        except InvalidURL as exc:
            assert "connect_datagram" in str(exc), exc
        else:
            raise AssertionError(f"{verb.__name__}(tun://) worked")
    try:
        await pa.connect_datagram("tun:///p7rany", local="tun:///other")
    except InvalidURL as exc:
        assert "no local address" in str(exc), exc
    else:
        raise AssertionError("a local address for a tun was accepted")

    chan = await pa.connect_datagram("tun:///p7rany")
    assert isinstance(chan, pa.PacketChannel)
    assert isinstance(chan, anyio.abc.UnreliableObjectStream)
    assert str(chan.url) == "tun:///p7rany"
    assert chan.extra(pa.PacketeerAttribute.url) == chan.url
    async with chan:
        assert if_flags("p7rany") & IFF_UP
        set_address("p7rany", LOCAL, "255.255.255.0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCAL, 0))
            sock.setblocking(False)
            port = sock.getsockname()[1]
            sock.sendto(b"x" * 200, (PEER, PEER_PORT))
            sock.sendto(b"to the peer", (PEER, PEER_PORT))
            # Too long for max_size: an error, never cut; the next one whole.
            too_long = 0
            with anyio.fail_after(5):
                while True:
                    try:
                        packet = await chan.receive(max_size=100)
                    except OSError as exc:
                        assert exc.errno == errno.EMSGSIZE, exc
                        assert "tun:///p7rany" in str(exc), exc
                        too_long += 1
                        continue
                    if is_udp_to_peer(packet):
                        break
            assert too_long >= 1 and packet[28:] == b"to the peer"
            # The reply, sent the way anyio callers do: send(item=...).
            reply = udp4_packet(PEER, PEER_PORT, LOCAL, port, b"from the peer")
            await chan.send(item=reply)
            with anyio.fail_after(5):
                await anyio.wait_readable(sock)
            assert sock.recvfrom(2048) == (b"from the peer", (PEER, PEER_PORT))

        # Closing wakes a waiting receiver with anyio's ClosedResourceError;
        # a second receiver meanwhile gets anyio's BusyResourceError.
        caught: list[BaseException] = []

        async def receiver() -> None:
            try:
                while True:
                    await chan.receive()
            except anyio.ClosedResourceError as exc:
                caught.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(receiver)
                await anyio.wait_all_tasks_blocked()
                try:
                    await chan.receive()
                except anyio.BusyResourceError:
                    pass
                else:
                    raise AssertionError("a second receiver got no BusyResourceError")
                await chan.aclose()
        assert len(caught) == 1 and "tun:///p7rany" in str(caught[0]), caught
    assert not if_exists("p7rany")
    for action in (chan.receive(), chan.send(b"\x45" + b"\0" * 19)):
        try:
            await action
        except anyio.ClosedResourceError:
            pass
        else:
            raise AssertionError("no ClosedResourceError after close")


async def anyio_tap_deleted() -> None:
    """A tap through the anyio face: frames both ways; deletion is Broken."""
    from packeteer_trio import anyio_compat as pa

    before = open_fds()
    async with await pa.connect_datagram("tap:///p7ranytap") as chan:
        name = "p7ranytap"
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        with raw:
            raw.bind((name, ETH_P_TEST))
            raw.setblocking(False)
            mac = raw.getsockname()[4]
            frame = (
                mac + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ETH_P_TEST)
            ) + b"anyio frame in".ljust(46, b".")
            await chan.send(frame)
            with anyio.fail_after(5):
                await anyio.wait_readable(raw)
            assert raw.recv(2048) == frame
            out = (
                b"\x02\x00\x00\x00\x00\x02" + mac + struct.pack("!H", ETH_P_TEST)
            ) + b"anyio frame out".ljust(46, b".")
            raw.send(out)
            got = await anyio_receive_matching(chan, lambda f: f == out)
            assert got == out

        caught: list[BaseException] = []

        async def receiver() -> None:
            try:
                while True:
                    await chan.receive()
            except anyio.BrokenResourceError as exc:
                caught.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(receiver)
                await anyio.wait_all_tasks_blocked()
                delete_link(name)
        assert "deleted" in str(caught[0]) and "tap:///p7ranytap" in str(caught[0])
    # Cancelled while waiting, then closed: nothing leaks.
    for _ in range(5):
        chan = await pa.connect_datagram("tun://")
        with anyio.move_on_after(0.01):
            await anyio_receive_matching(chan, lambda p: False)
        await chan.aclose()
    assert open_fds() == before, (before, open_fds())


ANYIO_SCENARIOS: dict[str, Callable[[], Awaitable[None]]] = {
    "anyio_tun": anyio_tun,
    "anyio_tap_deleted": anyio_tap_deleted,
}


SCENARIOS: dict[str, Callable[[], Awaitable[None]]] = {
    "probe": probe,
    "tun_udp": tun_udp,
    "tun_pi": tun_pi,
    "tun_truncation": tun_truncation,
    "tap_frames": tap_frames,
    "kernel_names": kernel_names,
    "close_wakes_receiver": close_wakes_receiver,
    "down_and_deleted": down_and_deleted,
    "no_fd_leak": no_fd_leak,
    "no_privilege": no_privilege,
    "scheduler_reads": scheduler_reads,
}


def main() -> None:
    name, _, backend = sys.argv[1].partition(":")  # "anyio_tun:asyncio"
    scenario = ANYIO_SCENARIOS[name] if backend else SCENARIOS[name]
    enter_private_netns()
    bring_up("lo")
    if scenario is no_privilege:
        drop_cap_net_admin()
    if backend:
        anyio.run(scenario, backend=backend)
    else:
        trio.run(scenario)


if __name__ == "__main__":
    main()
