"""Sphinx configuration: the guides (Markdown, through myst-parser) and the API
reference (autodoc), built offline with ``sphinx-build -W``.

No intersphinx: the build must not fetch anything, so references to trio,
anyio and the standard library are left as plain text (listed in
``nitpick_ignore_regex``); every reference to packeteer_trio itself must
resolve, which is what catches a name documented under a private module.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import packeteer_trio  # noqa: E402
import packeteer_trio._buffer  # noqa: E402
from packeteer_trio import anyio_compat  # noqa: E402
from packeteer_trio import http as http_module  # noqa: E402

project = "packeteer_trio"
author = "packeteer_trio developers"
copyright = "packeteer_trio developers"
release = packeteer_trio.__version__
version = release

# The repository the README's absolute links point to (for the package index);
# on this site those links are turned back into links between its pages.
REPOSITORY = "https://github.com/packeteer-trio/packeteer-trio"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"packeteer_trio {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
}
python_use_unqualified_type_names = True

nitpicky = True
# Without intersphinx, names of other projects cannot resolve: they stay text.
_EXTERNAL = (
    r"(trio|anyio|httpx|httpcore|hypercorn|typing|typing_extensions|collections|socket|ssl|os|enum|"
    r"types|abc|contextlib|builtins|io|pathlib|array|mmap|_typeshed)(\..+)?"
)
_BUILTINS = (
    r"(None|int|str|bytes|bytearray|memoryview|float|bool|object|list|dict|"
    r"tuple|set|frozenset|type|Exception|BaseException|ValueError|TypeError|"
    r"OSError|RuntimeError|KeyError|NotImplemented|Ellipsis|"
    r"BlockingIOError|ConnectionRefusedError|FileNotFoundError|"
    r"FileExistsError|PermissionError|ExceptionGroup|ConnectionError|"
    r"Buffer|Callable|Awaitable|Iterable|Iterator|AsyncIterator|Mapping|"
    r"Sequence|Any|Protocol|Self)"
)
# The docstrings inherited from trio's and anyio's ABCs name their classes
# relative to trio.abc / anyio.abc.
_ABC_NAMES = (
    r"(AsyncResource|SendStream|ReceiveStream|HalfCloseableStream|"
    r"SendChannel|ReceiveChannel|Channel|Listener|Stream|ByteStream|"
    r"TypedAttributeProvider|UnreliableObject\w*Stream|ObjectStream)(\..+)?"
)
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (r"py:.*", _BUILTINS),
    (r"py:.*", _ABC_NAMES),
]


def _public_modules() -> None:
    """Show the public classes as ``packeteer_trio.X`` everywhere.

    They are defined in private modules (which are being reorganised); their
    signatures and base-class lists would otherwise name those modules. This
    is trio's ``fixup_module_metadata``, applied to the docs build only.
    """
    for module in (packeteer_trio, anyio_compat, http_module):
        for name in module.__all__:
            obj = getattr(module, name)
            if getattr(obj, "__module__", "").startswith("packeteer_trio"):
                try:
                    obj.__module__ = module.__name__
                except (AttributeError, TypeError):
                    pass


_public_modules()

# receive_into's Buffer is collections.abc.Buffer from Python 3.12 on, and the
# same Protocol (packeteer_trio._buffer) before: show it by its standard name.
packeteer_trio._buffer.Buffer.__module__ = "collections.abc"


def _is_private(cls: type) -> bool:
    return cls.__name__.startswith("_") or cls.__module__.startswith("packeteer_trio._")


def _public_bases(
    app: Any, name: str, obj: type, options: Any, bases: list[type]
) -> None:
    """Show public base classes only: a private mixin is replaced by its own
    bases, recursively (``SocketStream(SocketIO, Stream)`` shows ``Stream``)."""
    result: list[type] = []

    def add(cls: type) -> None:
        if cls in result:
            return
        if _is_private(cls):
            for base in cls.__bases__:
                add(base)
        else:
            result.append(cls)

    for base in bases:
        add(base)
    if len(result) > 1 and object in result:  # a mixin's own base
        result.remove(object)
    bases[:] = result


# No constructor signature for classes that the verbs make for you (their
# constructors take private endpoint types and are not part of the API), nor
# for protocols and enums, which are not called.
_NO_SIGNATURE = {
    "packeteer_trio.Events",
    "packeteer_trio.StreamSchemeFactory",
    "packeteer_trio.DatagramSchemeFactory",
    "packeteer_trio.scheduler.SchedulerConnector",
    "packeteer_trio.Stream",
    "packeteer_trio.SocketStream",
    "packeteer_trio.PipeStream",
    "packeteer_trio.Listener",
    "packeteer_trio.DatagramSocket",
    "packeteer_trio.DatagramChannel",
    "packeteer_trio.PacketChannel",
    "packeteer_trio.Scheduler",
    "packeteer_trio.Registration",
    "packeteer_trio.WrappedStream",
    "packeteer_trio.WrappedListener",
    "packeteer_trio.WrappedDatagramSocket",
    "packeteer_trio.WrappedDatagramChannel",
    "packeteer_trio.anyio_compat.Listener",
    "packeteer_trio.anyio_compat.DatagramSocket",
    "packeteer_trio.anyio_compat.DatagramChannel",
    "packeteer_trio.anyio_compat.OSDatagramSocket",
    "packeteer_trio.anyio_compat.OSDatagramChannel",
    "packeteer_trio.anyio_compat.PacketChannel",
    "packeteer_trio.anyio_compat.SeqpacketStream",
    "packeteer_trio.anyio_compat.Stream",
    "packeteer_trio.OSDatagramSocket",
    "packeteer_trio.OSDatagramChannel",
    "packeteer_trio.SeqpacketChannel",
    "packeteer_trio.http.NetworkStream",
    *(
        f"packeteer_trio{face}.Inproc{kind}"
        for face in ("", ".anyio_compat")
        for kind in ("Stream", "Listener", "DatagramSocket", "DatagramChannel")
    ),
}


def _hide_constructors(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    if what == "class" and name in _NO_SIGNATURE:
        return "", return_annotation
    return None


def _rewrite_repository_links(
    app: Any, relative_path: Path, parent_docname: str, content: list[str]
) -> None:
    """The README links to the repository (so they work on the package index);
    included here, its links to docs/X.md become links to this site's pages."""
    pattern = re.escape(REPOSITORY) + r"/blob/main/docs/([\w.-]+\.md)"
    content[0] = re.sub(pattern, r"\1", content[0])


def _check_coverage(app: Any, env: Any) -> None:
    """Every public name of both faces is in the reference (a warning, so an
    error under -W, if one is missing)."""
    from sphinx.util import logging

    documented = set(env.domaindata["py"]["objects"])
    for module in (packeteer_trio, anyio_compat, http_module):
        names = list(module.__all__)
        if module is packeteer_trio:
            names.append("__version__")
        for name in names:
            full = f"{module.__name__}.{name}"
            if full not in documented:
                logging.getLogger(__name__).warning(
                    "%s is public but not in the API reference", full
                )


def setup(app: Any) -> None:
    app.connect("include-read", _rewrite_repository_links)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-signature", _hide_constructors)
    app.connect("env-check-consistency", _check_coverage)
