"""IPv6 zones for real: a link-local address inside a private network namespace.

``python tests/_zone_netns.py`` first calls ``unshare(CLONE_NEWNET)``, then
gives the namespace's own ``lo`` the link-local address fe80::1 (by netlink,
no iproute2), which exists nowhere else. A link-local address means nothing
without its zone: the kernel refuses to bind or connect to it with scope id
0 (EINVAL), so every round trip below proves that ``[fe80::1%25lo]`` reached
the socket as ``sin6_scope_id``. Exit status: 0 passed, 77 cannot run here
(the reason on stdout), anything else failed (the traceback on stderr).
Driven by test_url.py.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

import trio

import packeteer_trio as pt
from packeteer_trio import anyio_compat as pa

assert sys.platform == "linux", "network namespaces are Linux-only"

CLONE_NEWNET = 0x40000000
SKIP = 77
LINK = "fe80::1"  # on this namespace's lo only
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def skip(reason: str) -> None:
    print(reason)
    sys.exit(SKIP)


def enter_private_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        skip(f"unshare(CLONE_NEWNET) failed: {os.strerror(code)} (needs CAP_SYS_ADMIN)")


def bring_up_lo() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH", b"lo", 0).ljust(40, b"\0")
        (flags,) = struct.unpack_from("H", fcntl_ioctl(sock, SIOCGIFFLAGS, ifreq), 16)
        fcntl_ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def fcntl_ioctl(sock: socket.socket, request: int, arg: bytes) -> bytes:
    import fcntl

    return fcntl.ioctl(sock, request, arg.ljust(40, b"\0"))


def add_link_local(index: int, address: str) -> None:
    """RTM_NEWADDR: *address*/64 on interface *index*, no duplicate detection
    (a tentative address cannot be bound yet)."""
    rtm_newaddr, nlm_flags = 20, 0x1 | 0x4 | 0x200 | 0x400  # REQUEST ACK EXCL CREATE
    ifa_address, ifa_f_nodad, rt_scope_link, nlmsg_error = 1, 0x02, 253, 2
    attribute = struct.pack("HH", 20, ifa_address) + socket.inet_pton(
        socket.AF_INET6, address
    )
    body = (
        struct.pack("BBBBI", socket.AF_INET6, 64, ifa_f_nodad, rt_scope_link, index)
        + attribute
    )
    header = struct.pack("IHHII", 16 + len(body), rtm_newaddr, nlm_flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(header + body)
        reply = nl.recv(65536)
    _, kind = struct.unpack_from("IH", reply)
    if kind == nlmsg_error:
        (code,) = struct.unpack_from("i", reply, 16)
        if code:
            skip(f"cannot add {address} to lo: {os.strerror(-code)}")


async def scenario() -> None:
    lo = socket.if_nametoindex("lo")

    # Without the zone the kernel refuses the address: the zone matters.
    try:
        await pt.listen(f"tcp6://[{LINK}]:0")
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
    else:
        raise AssertionError("a link-local address without a zone was bound")

    # Streams: listen and connect with a named zone; the URLs keep it.
    listener = await pt.listen(f"tcp6://[{LINK}%25lo]:0")
    async with listener:
        assert listener.url.host == f"{LINK}%lo", listener.url
        assert str(listener.url) == f"tcp6://[{LINK}%25lo]:{listener.url.port}"
        for target in (
            listener.url,
            str(listener.url),
            f"tcp://[{LINK}%25{lo}]:{listener.url.port}",  # a numeric zone
            f"tcp6://[{LINK}%lo]:{listener.url.port}",  # a bare '%' too
        ):
            async with await pt.connect(target) as client:
                async with await listener.accept() as server:
                    await client.send_all(b"through the zone")
                    assert await server.receive_some() == b"through the zone"
                    assert client.peer_address == listener.url
                    assert server.peer_address.host == f"{LINK}%lo"
                    assert client.url.host == f"{LINK}%lo"

    # Datagrams: the sender URL carries the zone and goes straight back.
    sock = await pt.open_datagram(f"udp6://[{LINK}%25lo]:0")
    async with sock, await pt.connect_datagram(sock.url) as channel:
        await channel.send(b"ping")
        data, sender = await sock.receive_from()
        assert data == b"ping" and sender.host == f"{LINK}%lo", sender
        await sock.send_to(b"pong", sender)
        await sock.send_to(b"pong again", str(sender))  # parsed, not cached
        assert await channel.receive() == b"pong"
        assert await channel.receive() == b"pong again"

    # An unknown zone fails before any socket, naming the URL.
    try:
        await pt.connect(f"tcp6://[{LINK}%25nosuch0]:9")
    except OSError as exc:
        assert exc.errno == errno.ENODEV and "nosuch0" in str(exc), exc
    else:
        raise AssertionError("an unknown zone was accepted")

    # The anyio face resolves through the same code.
    listener = await pt.listen(f"tcp6://[{LINK}%25lo]:0")
    async with listener:
        async with await pa.connect(listener.url) as client:
            async with await listener.accept() as server:
                await client.send(b"anyio")
                assert await server.receive_some() == b"anyio"


def main() -> None:
    enter_private_netns()
    bring_up_lo()
    if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
        skip("no IPv6 in this kernel")
    add_link_local(socket.if_nametoindex("lo"), LINK)
    trio.run(scenario)


if __name__ == "__main__":
    main()
