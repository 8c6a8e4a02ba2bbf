"""Multicast and broadcast over a veth pair between two private network namespaces.

``python tests/_multicast_netns.py SCENARIO`` first calls
``unshare(CLONE_NEWNET)`` twice: namespace A (the receivers' side, where this
process stays) and namespace B (the senders'), kept alive by a descriptor.
It then creates the veth pair ``mca`` (in A, 10.201.0.1/24, fe80::a) and
``mcb`` (in B, 10.201.0.2/24, fe80::b) by netlink, no iproute2. Sockets
belong to the namespace they were made in, so one trio run opens receivers
in A and senders in B by switching namespaces (setns) around each open.
Everything dies with this process: nothing here can reach the host's
network. Neither namespace has a default route, so a multicast datagram
leaves only through the interface that ``iface=`` names.

That a datagram did *not* arrive is shown without timing: after it, the
same sender sends a marker the receiver does get; the marker must be the
first thing the receiver sees (one sender, one veth: datagrams keep their
order).

Exit status: 0 passed, 77 cannot run here (the reason on stdout), anything
else failed (the traceback on stderr). Driven by test_multicast.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterator

import trio

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa

assert sys.platform == "linux", "network namespaces are Linux-only"

CLONE_NEWNET = 0x40000000
SKIP = 77
A_IF, B_IF = "mca", "mcb"
A4, B4, BROADCAST4 = "10.201.0.1", "10.201.0.2", "10.201.0.255"
A6, B6 = "fe80::a", "fe80::b"
GROUP4, OTHER4 = "239.1.2.3", "239.9.9.9"
GROUP6, SITE6, OTHER6 = "ff02::1234", "ff05::1234", "ff02::9999"
PORT, PORT2, PORT3 = 5000, 5001, 5002
TIMEOUT = 10  # a safety net against a hang, not a measurement

_libc = ctypes.CDLL(None, use_errno=True)


def skip(reason: str) -> None:
    print(reason)
    sys.exit(SKIP)


# --- namespaces ---------------------------------------------------------------


def _unshare() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        skip(f"unshare(CLONE_NEWNET) failed: {os.strerror(code)} (needs CAP_SYS_ADMIN)")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


class Namespaces:
    """Two fresh network namespaces; this thread starts (and ends) in A."""

    def __init__(self) -> None:
        _unshare()
        self.a = os.open("/proc/self/ns/net", os.O_RDONLY)
        _unshare()
        self.b = os.open("/proc/self/ns/net", os.O_RDONLY)
        _setns(self.a)

    @contextlib.contextmanager
    def inside_b(self) -> Iterator[None]:
        """Sockets made in this block (and interface names looked up) are B's."""
        _setns(self.b)
        try:
            yield
        finally:
            _setns(self.a)


# --- netlink (RTM_NEWLINK, RTM_NEWADDR) ---------------------------------------

RTM_NEWLINK, RTM_NEWADDR, NLMSG_ERROR = 16, 20, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
IFA_F_NODAD, RT_SCOPE_LINK, IFF_UP = 0x02, 253, 0x1


def _attr(kind: int, payload: bytes) -> bytes:
    body = struct.pack("HH", 4 + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def _request(kind: int, body: bytes, flags: int = 0) -> None:
    """Send one netlink request in the current namespace; raise on its error."""
    header = struct.pack(
        "IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(header + body)
        reply = nl.recv(65536)
    _, got = struct.unpack_from("IH", reply)
    if got == NLMSG_ERROR:
        (code,) = struct.unpack_from("i", reply, 16)
        if code:
            raise OSError(-code, f"netlink: {os.strerror(-code)}")


def create_veth(name: str, peer: str, peer_netns: int) -> None:
    peer_info = _ifinfo() + _attr(IFLA_IFNAME, peer.encode() + b"\0")
    peer_info += _attr(IFLA_NET_NS_FD, struct.pack("I", peer_netns))
    linkinfo = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(
        IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info)
    )
    body = _ifinfo() + _attr(IFLA_IFNAME, name.encode() + b"\0")
    body += _attr(IFLA_LINKINFO, linkinfo)
    _request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)


def bring_up(name: str) -> None:
    index = socket.if_nametoindex(name)
    _request(RTM_NEWLINK, _ifinfo(index, IFF_UP, IFF_UP))


def add_ipv4(name: str, address: str, prefix: int, broadcast: str) -> None:
    index = socket.if_nametoindex(name)
    packed = socket.inet_aton(address)
    body = struct.pack("BBBBI", socket.AF_INET, prefix, 0, 0, index)
    body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    body += _attr(IFA_BROADCAST, socket.inet_aton(broadcast))
    _request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


def add_link_local(name: str, address: str) -> None:
    """fe80::…/64 without duplicate detection (a tentative address cannot
    be a source yet)."""
    index = socket.if_nametoindex(name)
    body = struct.pack("BBBBI", socket.AF_INET6, 64, IFA_F_NODAD, RT_SCOPE_LINK, index)
    body += _attr(IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, address))
    _request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


def set_up(ns: Namespaces) -> None:
    try:
        create_veth(A_IF, B_IF, ns.b)
    except OSError as exc:
        skip(f"cannot create a veth pair: {exc.strerror} (no veth module?)")
    bring_up("lo")
    add_ipv4(A_IF, A4, 24, BROADCAST4)
    bring_up(A_IF)
    with ns.inside_b():
        bring_up("lo")
        add_ipv4(B_IF, B4, 24, BROADCAST4)
        bring_up(B_IF)
    if os.path.exists("/proc/net/if_inet6"):
        add_link_local(A_IF, A6)
        with ns.inside_b():
            add_link_local(B_IF, B6)


# --- receiving ----------------------------------------------------------------


async def first(sock: pt.DatagramSocket) -> bytes:
    with trio.fail_after(TIMEOUT):
        data, _ = await sock.receive_from()
    return data


async def expect(sock: pt.DatagramSocket, *wanted: bytes) -> None:
    """*sock* receives exactly *wanted*, in order, as its next datagrams."""
    for datagram in wanted:
        got = await first(sock)
        assert got == datagram, f"{sock.url}: got {got!r}, wanted {datagram!r}"


# --- scenarios ----------------------------------------------------------------


async def ipv4_groups(ns: Namespaces) -> None:
    """Joined receivers get the group's datagrams; others do not."""
    by_name = await pt.open_datagram(f"udp4://:{PORT}?join={GROUP4}&iface={A_IF}")
    by_address = await pt.open_datagram(
        f"udp://0.0.0.0:{PORT}?join={GROUP4}&iface={A4}"
    )
    # The same port, another group: SO_REUSEADDR lets them share the port.
    other = await pt.open_datagram(f"udp4://:{PORT}?join={OTHER4}&iface={A_IF}")
    # Not joined at all, on a port of its own.
    plain = await pt.open_datagram(f"udp4://0.0.0.0:{PORT2}")
    assert by_name.url.port == PORT and by_address.url.host == "0.0.0.0"
    with ns.inside_b():
        sender = await pt.open_datagram(f"udp4://{B4}:0?iface={B_IF}")
        # Without iface= (nor a source address that picks the interface)
        # there is no route to a group in B: the kernel refuses.
        unrouted = await pt.open_datagram("udp4://0.0.0.0:0")
        channel = await pt.connect_datagram(f"udp4://{GROUP4}:{PORT}?iface={B_IF}")
    try:
        await unrouted.send_to(b"nowhere", f"udp4://{GROUP4}:{PORT}")
    except OSError as exc:
        assert exc.errno == errno.ENETUNREACH and "udp4://" in str(exc), exc
    else:
        raise AssertionError("a group was reached without a route or iface=")
    await sender.send_to(b"to the group", f"udp4://{GROUP4}:{PORT}")
    await sender.send_to(b"to the group, other port", f"udp4://{GROUP4}:{PORT2}")
    await channel.send(b"connected to the group")
    await expect(by_name, b"to the group", b"connected to the group")
    await expect(by_address, b"to the group", b"connected to the group")
    await sender.send_to(b"marker", f"udp4://{OTHER4}:{PORT}")
    await sender.send_to(b"marker", f"udp4://{A4}:{PORT2}")
    await expect(other, b"marker")  # never the other group's
    await expect(plain, b"marker")  # nor a group it did not join

    # Several groups at once, comma-separated.
    both = await pt.open_datagram(
        f"udp4://:{PORT3}?join={GROUP4},{OTHER4}&iface={A_IF}"
    )
    await sender.send_to(b"one", f"udp4://{GROUP4}:{PORT3}")
    await sender.send_to(b"two", f"udp4://{OTHER4}:{PORT3}")
    await expect(both, b"one", b"two")

    # The anyio face opens through the same code.
    async with await pa.open_datagram(
        f"udp4://:{PORT3}?join={GROUP4}&iface={A_IF}"
    ) as anyio_sock:
        await sender.send_to(b"anyio", f"udp4://{GROUP4}:{PORT3}")
        data, _ = await anyio_sock.receive()
        assert data == b"anyio", data
    for sock in (by_name, by_address, other, plain, both, sender, unrouted, channel):
        await sock.aclose()


async def ipv4_loop(ns: Namespaces) -> None:
    """loop=0: this host's own joined sockets do not get what it sends."""
    receiver = await pt.open_datagram(f"udp4://:{PORT}?join={GROUP4}&iface={A_IF}")
    quiet = await pt.open_datagram(f"udp4://{A4}:0?iface={A_IF}&loop=0")
    loud = await pt.open_datagram(f"udp4://{A4}:0?iface={A_IF}&loop=1")
    default = await pt.open_datagram(f"udp4://{A4}:0?iface={A_IF}")
    with ns.inside_b():
        remote = await pt.open_datagram(f"udp4://{B4}:0?iface={B_IF}")
    quiet_sock, loud_sock = quiet.socket, loud.socket
    assert quiet_sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
    assert loud_sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1
    await quiet.send_to(b"not looped back", f"udp4://{GROUP4}:{PORT}")
    await remote.send_to(b"marker", f"udp4://{GROUP4}:{PORT}")
    await expect(receiver, b"marker")
    await loud.send_to(b"looped back", f"udp4://{GROUP4}:{PORT}")
    await default.send_to(b"looped back by default", f"udp4://{GROUP4}:{PORT}")
    await expect(receiver, b"looped back", b"looped back by default")
    for sock in (receiver, quiet, loud, default, remote):
        await sock.aclose()


class Capture:
    """IP packets arriving on an interface of A, as the wire has them."""

    def __init__(self, name: str, ethertype: int) -> None:
        protocol = socket.htons(ethertype)
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, protocol)
        raw.bind((name, 0))
        self.sock = trio.socket.from_stdlib_socket(raw)

    async def header_of(self, payload: bytes) -> bytes:
        """The IP header of the first UDP packet carrying *payload*."""
        with trio.fail_after(TIMEOUT):
            while True:
                packet = await self.sock.recv(65536)
                if packet.endswith(payload):
                    return packet[: len(packet) - len(payload) - 8]


ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD


async def ipv4_ttl(ns: Namespaces) -> None:
    """ttl=N is the TTL the datagrams carry on the wire."""
    receiver = await pt.open_datagram(f"udp4://:{PORT}?join={GROUP4}&iface={A_IF}")
    capture = Capture(A_IF, ETH_P_IP)
    with ns.inside_b():
        default = await pt.open_datagram(f"udp4://{B4}:0?iface={B_IF}")
        hops = await pt.open_datagram(f"udp4://{B4}:0?iface={B_IF}&ttl=7")
        channel = await pt.connect_datagram(
            f"udp4://{GROUP4}:{PORT}?iface={B_IF}&ttl=9"
        )
    ttl = socket.IP_MULTICAST_TTL
    assert hops.socket.getsockopt(socket.IPPROTO_IP, ttl) == 7
    for sender, payload in ((default, b"ttl 1"), (hops, b"ttl 7")):
        await sender.send_to(payload, f"udp4://{GROUP4}:{PORT}")
    await channel.send(b"ttl 9")
    for wanted in (1, 7, 9):
        header = await capture.header_of(b"ttl %d" % wanted)
        assert header[8] == wanted, (wanted, header.hex())  # IPv4 TTL
    await expect(receiver, b"ttl 1", b"ttl 7", b"ttl 9")
    capture.sock.close()
    for sock in (receiver, default, hops, channel):
        await sock.aclose()


async def ipv4_broadcast(ns: Namespaces) -> None:
    """broadcast=1 allows sending to the subnet's broadcast address."""
    receiver = await pt.open_datagram(f"udp4://0.0.0.0:{PORT}")
    with ns.inside_b():
        allowed = await pt.open_datagram(f"udp4://{B4}:0?broadcast=1")
        refused = await pt.open_datagram(f"udp4://{B4}:0")
        channel = await pt.connect_datagram(f"udp4://{BROADCAST4}:{PORT}?broadcast=1")
        try:
            await pt.connect_datagram(f"udp4://{BROADCAST4}:{PORT}")
        except PermissionError as exc:
            assert BROADCAST4 in str(exc), exc
        else:
            raise AssertionError("connected to a broadcast address without broadcast=1")
    try:
        await refused.send_to(b"refused", f"udp4://{BROADCAST4}:{PORT}")
    except PermissionError as exc:
        assert str(refused.url) in str(exc) or BROADCAST4 in str(exc), exc
    else:
        raise AssertionError("sent to a broadcast address without broadcast=1")
    await allowed.send_to(b"to everyone", f"udp4://{BROADCAST4}:{PORT}")
    await channel.send(b"connected to everyone")
    await expect(receiver, b"to everyone", b"connected to everyone")
    for sock in (receiver, allowed, refused, channel):
        await sock.aclose()


async def ipv6_groups(ns: Namespaces) -> None:
    """ff02:: (link-local) and ff05:: (site-local) groups on the veth."""
    link = await pt.open_datagram(f"udp6://[::]:{PORT}?join={GROUP6}&iface={A_IF}")
    index = socket.if_nametoindex(A_IF)
    site = await pt.open_datagram(f"udp://:{PORT}?join={SITE6}&iface={index}")
    other = await pt.open_datagram(f"udp6://[::]:{PORT}?join={OTHER6}&iface={A_IF}")
    plain = await pt.open_datagram(f"udp6://[::]:{PORT2}")
    assert link.url.host == "::" and site.url.host == "::", (link.url, site.url)
    with ns.inside_b():
        sender = await pt.open_datagram(f"udp6://[::]:0?iface={B_IF}")
        hops = await pt.open_datagram(f"udp6://[::]:0?iface={B_IF}&ttl=3&loop=0")
        b_index = socket.if_nametoindex(B_IF)
    multicast_if = socket.IPV6_MULTICAST_IF
    assert sender.socket.getsockopt(socket.IPPROTO_IPV6, multicast_if) == b_index
    assert hops.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == 3
    assert hops.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP) == 0
    capture = Capture(A_IF, ETH_P_IPV6)
    await hops.send_to(b"hop limit 3", f"udp6://[{GROUP6}]:{PORT}")
    header = await capture.header_of(b"hop limit 3")
    assert header[7] == 3, header.hex()  # the IPv6 hop limit
    capture.sock.close()
    await expect(link, b"hop limit 3")
    await sender.send_to(b"link-local group", f"udp6://[{GROUP6}]:{PORT}")
    await sender.send_to(b"site-local group", f"udp6://[{SITE6}]:{PORT}")
    await sender.send_to(b"other port", f"udp6://[{GROUP6}]:{PORT2}")
    got, source = await link.receive_from()
    assert got == b"link-local group", got
    assert source.host == f"{B6}%{A_IF}", source  # the sender's link-local address
    await expect(site, b"site-local group")
    await sender.send_to(b"marker", f"udp6://[{OTHER6}]:{PORT}")
    await sender.send_to(b"marker", f"udp6://[{A6}%25{b_index}]:{PORT2}")
    await expect(other, b"marker")
    await expect(plain, b"marker")
    # The sender's URL, zone included, goes straight back.
    await link.send_to(b"reply", source)
    await expect(sender, b"reply")
    for sock in (link, site, other, plain, sender, hops):
        await sock.aclose()


async def open_errors(ns: Namespaces) -> None:
    """What only opening can find out names the URL."""
    try:
        await pt.open_datagram(f"udp4://:{PORT}?join={GROUP4}&iface=nosuch0")
    except OSError as exc:
        assert exc.errno == errno.ENODEV and "nosuch0" in str(exc), exc
        assert f"udp4://:{PORT}" in str(exc), exc
    else:
        raise AssertionError("an unknown interface was accepted")
    # A group joined on an interface without an address of that family...
    try:
        await pt.open_datagram(f"udp4://:{PORT}?join={GROUP4}&iface=192.0.2.99")
    except OSError as exc:
        assert exc.errno == errno.EADDRNOTAVAIL, exc
        assert "iface=192.0.2.99" in str(exc), exc
    else:
        raise AssertionError("joined on an address no interface has")
    # ...and a host name's family is known only once it is resolved.
    try:
        await pt.open_datagram(f"udp://localhost:{PORT}?join={GROUP6}&iface={A_IF}")
    except pt.InvalidURL as exc:
        assert "family" in str(exc), exc
    else:
        raise AssertionError("an IPv6 group was joined on an IPv4 socket")
    try:
        await pt.connect_datagram(f"udp4://{GROUP4}:{PORT}?join={GROUP4}")
    except pt.InvalidURL as exc:
        assert "open_datagram" in str(exc), exc
    else:
        raise AssertionError("connect_datagram took join=")
    # No descriptor is left behind by any of the failures.
    assert len(os.listdir("/proc/self/fd")) == FDS_AT_START, os.listdir("/proc/self/fd")


FDS_AT_START = 0

SCENARIOS: dict[str, Callable[[Namespaces], Awaitable[None]]] = {
    "ipv4_groups": ipv4_groups,
    "ipv4_loop": ipv4_loop,
    "ipv4_ttl": ipv4_ttl,
    "ipv4_broadcast": ipv4_broadcast,
    "ipv6_groups": ipv6_groups,
    "open_errors": open_errors,
}


def main() -> None:
    global FDS_AT_START
    name = sys.argv[1]
    ns = Namespaces()
    set_up(ns)
    if name == "probe":
        return
    if name.startswith("ipv6") and not os.path.exists("/proc/net/if_inet6"):
        skip("no IPv6 in this kernel")

    async def scenario() -> None:
        global FDS_AT_START
        FDS_AT_START = len(os.listdir("/proc/self/fd"))
        await SCENARIOS[name](ns)

    trio.run(scenario)


if __name__ == "__main__":
    main()
