"""tun:// and tap:// — Linux virtual network interfaces (``/dev/net/tun``).

``tun:///NAME`` moves IP packets, ``tap:///NAME`` Ethernet frames, through
``connect_datagram(url)``: one receive is one packet, one send writes one.
An empty name (``tun://``, ``tun:///``) lets the kernel pick one (``tun0``),
as does a name with one ``%d`` (``tun:///vpn%d``); the channel's ``url``
carries the real name. Options: ``mtu=`` (68-65535), ``txqueuelen=``, and
``pi=1`` to keep the kernel's 4-byte packet-info header (default: none,
``IFF_NO_PI``).

Opening creates the interface (or attaches to a persistent one), sets MTU
and queue length and brings it up, all by ioctl: no ``ip`` command needed.
That needs CAP_NET_ADMIN (root, or a capability) in the interface's network
namespace. A non-persistent interface disappears when the channel closes.
Addresses and routes are left to the caller (``ip addr``, NetworkManager,
or SIOCSIFADDR), as in packeteer.
"""

from __future__ import annotations

import sys

from .._errors import InvalidURL
from .._registry import Scheme, register
from .._url import URL

IFNAMSIZ = 16  # the kernel's limit, counting the terminating NUL
MIN_MTU, MAX_MTU = 68, 65535  # what the tun driver accepts
# Bytes the kernel refuses in interface names (dev_valid_name: '/', ':' and
# what its isspace() calls space, which includes Latin-1's 0xA0), and NUL.
_BAD_NAME_BYTES = frozenset(b"/:\0 \t\n\v\f\r\xa0")


def device_name(url: URL) -> str:
    """The interface name in *url*; "" when the kernel is to pick it."""
    return url.path[1:] if url.path.startswith("/") else url.path


def _check_name(name: str, text: str, scheme: str) -> None:
    if not name:
        return
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidURL(f"{text!r}: {name!r} is not a usable interface name") from None
    size = len(raw)
    if size > IFNAMSIZ - 1:
        raise InvalidURL(
            f"{text!r}: interface name {name!r} is {size} bytes long; Linux allows "
            f"at most {IFNAMSIZ - 1} (IFNAMSIZ-1)"
        )
    if name in (".", "..") or not _BAD_NAME_BYTES.isdisjoint(raw):
        raise InvalidURL(
            f"{text!r}: {name!r} is not a valid interface name (no '/', ':', "
            f"spaces or NUL, not '.' or '..'); write {scheme}:///NAME"
        )
    percent = name.find("%")
    if percent >= 0 and (
        name[percent + 1 : percent + 2] != "d" or "%" in name[percent + 2 :]
    ):
        raise InvalidURL(
            f"{text!r}: a '%' in an interface name must be a single %d (the "
            "kernel puts a number there)"
        )


def _int_option(url: URL, text: str, key: str, low: int, high: int) -> None:
    value = url.query.get(key)
    if value is None:
        return
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise InvalidURL(f"{text!r}: {key}={value!r} is not an integer in {low}-{high}")


def validate(url: URL, text: str) -> URL:
    scheme = url.scheme
    if url.host or url.port is not None:
        raise InvalidURL(
            f"{text!r}: {scheme}:// takes an interface name, not a host: "
            f"{scheme}:///NAME (or {scheme}:// for a kernel-picked name)"
        )
    name = device_name(url)
    _check_name(name, text, scheme)
    _int_option(url, text, "mtu", MIN_MTU, MAX_MTU)
    _int_option(url, text, "txqueuelen", 0, 2**31 - 1)
    pi = url.query.get("pi")
    if pi is not None and pi not in ("0", "1"):
        raise InvalidURL(f"{text!r}: pi={pi!r} is not a boolean")
    # Canonical: tun:///NAME, or tun:// when the kernel picks the name.
    return url.replace(path=f"/{name}" if name else "")


if sys.platform == "linux":
    import errno
    import fcntl
    import os
    import platform
    import socket
    import struct

    from .._endpoints import PacketEndpoint

    CLONE_DEVICE = "/dev/net/tun"  # a module attribute so tests can point elsewhere

    # linux/if_tun.h: TUNSETIFF is _IOW('T', 202, int); the direction bits
    # differ on the few architectures whose ioctl encoding is not asm-generic.
    _IOC_WRITE_OLD = ("mips", "ppc", "powerpc", "sparc", "alpha")
    TUNSETIFF = (
        0x800454CA
        if platform.machine().lower().startswith(_IOC_WRITE_OLD)
        else 0x400454CA
    )
    IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
    # linux/sockios.h
    SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
    SIOCGIFMTU, SIOCSIFMTU = 0x8921, 0x8922
    SIOCGIFTXQLEN, SIOCSIFTXQLEN = 0x8942, 0x8943
    IFF_UP = 0x1
    _IFREQ_SIZE = 40  # sizeof(struct ifreq) on 64-bit; enough on 32-bit too

    def _ifreq(name: bytes, fmt: str = "", *values: int) -> bytes:
        """A struct ifreq: the name, then the union member packed by *fmt*."""
        return struct.pack(f"{IFNAMSIZ}s{fmt}", name, *values).ljust(_IFREQ_SIZE, b"\0")

    def _fail(exc: OSError, url: URL, action: str, hint: str = "") -> OSError:
        """Same OSError class and errno, with the URL, the step and a hint."""
        message = f"{url}: {action} failed: {exc.strerror or exc}"
        if hint:
            message += f" ({hint})"
        try:
            return type(exc)(exc.errno, message)
        except TypeError:  # pragma: no cover - an OSError with its own __init__
            return OSError(exc.errno, message)

    def _open_clone(url: URL) -> int:
        try:
            return os.open(CLONE_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            hints = {
                errno.ENOENT: f"{CLONE_DEVICE} does not exist: load the tun module "
                "(modprobe tun) or, in a container, pass the device in",
                errno.ENODEV: "the kernel has no tun driver: modprobe tun",
                errno.ENXIO: "the kernel has no tun driver: modprobe tun",
                errno.EACCES: f"no read/write permission on {CLONE_DEVICE}; "
                "run as root or give this user access to it",
                errno.EPERM: f"not allowed to open {CLONE_DEVICE} (a container "
                "or sandbox may deny the device)",
            }
            raise _fail(
                exc, url, f"open {CLONE_DEVICE}", hints.get(exc.errno or 0, "")
            ) from exc

    def _attach(fd: int, url: URL) -> str:
        """TUNSETIFF: create the interface (or attach to it); its real name."""
        name = device_name(url).encode("utf-8", "surrogateescape")
        flags = IFF_TUN if url.scheme == "tun" else IFF_TAP
        if url.query.get("pi", "0") != "1":
            flags |= IFF_NO_PI
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, "H", flags))
        except OSError as exc:
            shown = name.decode("utf-8", "surrogateescape") or "an interface"
            hints = {
                errno.EPERM: "creating or attaching to a tun/tap interface needs "
                "CAP_NET_ADMIN in this network namespace: run as root, grant the "
                "capability, or use a persistent interface owned by this user",
                errno.EBUSY: f"{shown} is already open elsewhere; it takes one "
                "descriptor at a time",
                errno.EINVAL: f"{shown} exists and is not a {url.scheme} interface",
            }
            raise _fail(
                exc, url, f"create {shown}", hints.get(exc.errno or 0, "")
            ) from exc
        return answer[:IFNAMSIZ].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def _ioctl(
        sock: socket.socket, request: int, ifreq: bytes, url: URL, action: str
    ) -> bytes:
        try:
            return fcntl.ioctl(sock, request, ifreq)
        except OSError as exc:
            hint = {
                errno.EPERM: "configuring an interface needs CAP_NET_ADMIN in "
                "its network namespace",
                errno.EINVAL: "the kernel refused the value",
            }.get(exc.errno or 0, "")
            raise _fail(exc, url, action, hint) from exc

    def _configure(name: str, url: URL) -> None:
        """Set MTU and queue length, then bring the interface up, by ioctl."""
        raw = name.encode("utf-8", "surrogateescape")
        # Any socket takes the interface ioctls; AF_INET is the usual one.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            mtu = url.query.get("mtu")
            if mtu is not None:
                ifreq = _ifreq(raw, "i", int(mtu))
                _ioctl(sock, SIOCSIFMTU, ifreq, url, f"set mtu={mtu} on {name}")
            qlen = url.query.get("txqueuelen")
            if qlen is not None:
                ifreq = _ifreq(raw, "i", int(qlen))
                _ioctl(
                    sock, SIOCSIFTXQLEN, ifreq, url, f"set txqueuelen={qlen} on {name}"
                )
            # Keep the flags the kernel set (POINTOPOINT, NOARP, ...): add IFF_UP.
            action = f"bring up {name}"
            answer = _ioctl(sock, SIOCGIFFLAGS, _ifreq(raw), url, action)
            (flags,) = struct.unpack_from("H", answer, IFNAMSIZ)
            if not flags & IFF_UP:
                _ioctl(
                    sock, SIOCSIFFLAGS, _ifreq(raw, "H", flags | IFF_UP), url, action
                )

    async def connect_packet(url: URL) -> PacketEndpoint:
        # All of it is quick, non-blocking ioctls: no thread needed.
        fd = _open_clone(url)
        try:
            name = _attach(fd, url)
            _configure(name, url)
        except BaseException:
            os.close(fd)  # a non-persistent interface goes away with it
            raise
        return PacketEndpoint(fd=fd, url=url.replace(path=f"/{name}"))

    register(Scheme("tun", validate, connect_packet=connect_packet))
    register(Scheme("tap", validate, connect_packet=connect_packet))
else:  # pragma: no cover
    for _kind in ("tun", "tap"):
        register(
            Scheme(
                _kind,
                unsupported=f"{_kind}:// (TUN/TAP via /dev/net/tun) exists only on "
                "Linux; this platform has no equivalent here (macOS utun and BSD "
                "/dev/tun* are not supported)",
            )
        )
