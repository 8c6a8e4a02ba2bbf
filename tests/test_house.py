"""The shape of the package (issue 16): no import cycles, one lookup per verb,
the TLS example outside the core, final public classes, adapters that hold
what they adapt.

The layer rule itself is ``lint-imports`` (the contract in pyproject.toml,
run by .ci/run); this file checks what it cannot: cycles *inside* a layer.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import _registry, anyio_compat
from packeteer_trio import anyio_compat as pa
from packeteer_trio._trio import _face
from packeteer_trio.scheduler import Events

PACKAGE = Path(pt.__file__).parent


def module_files() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes inside ``if TYPE_CHECKING:`` bodies: never imported at run time."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(inner) for inner in ast.walk(statement))
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The package modules *name* imports, at module level or in functions.

    ``from pkg import mod`` counts ``pkg.mod`` when that is a module, else
    ``pkg`` itself; a package's ``__init__`` that every submodule import
    runs first is not counted as a dependency of its own.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("packeteer_trio"):
                continue
            for alias in node.names:
                child = f"{target}.{alias.name}"
                if child in modules:
                    yield child
                elif target in modules:
                    yield target


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {
        name: set(imports_of(name, path, modules)) - {name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # _registry loads a lazy scheme by name (no import statement), _trio's
    # stream module imports the Windows stream class inside a function.
    windows = "packeteer_trio._trio._stream_windows"
    assert windows in graph["packeteer_trio._trio._stream"]
    assert "packeteer_trio.tls" not in graph["packeteer_trio._registry"]


def test_no_import_cycle_among_the_package_modules() -> None:
    assert cycles(import_graph()) == []


# -- one lookup per verb ------------------------------------------------------


class CountingTable(dict[str, _registry.AnyScheme]):
    """The registry's table, counting the lookups of each name."""

    def __init__(self, table: dict[str, _registry.AnyScheme]) -> None:
        super().__init__(table)
        self.lookups: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.lookups[key] = self.lookups.get(key, 0) + 1

    def __getitem__(self, key: str) -> _registry.AnyScheme:
        self._count(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self._count(key)
        return super().get(key, default)


@pytest.mark.trio
async def test_a_verb_looks_its_scheme_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = CountingTable(_registry._schemes)
    monkeypatch.setattr(_registry, "_schemes", table)
    async with await pt.listen("tcp://127.0.0.1:0") as listener:
        assert table.lookups == {"tcp": 1}
        port = listener.url.port
        async with await pt.connect(f"tcp://127.0.0.1:{port}"):
            assert table.lookups == {"tcp": 2}
        # A URL given as such was parsed already: looked up, not re-checked.
        async with await pt.connect(listener.url):
            assert table.lookups == {"tcp": 2, "tcp4": 1}
    async with await pt.open_datagram("udp://127.0.0.1:0") as sock:
        assert table.lookups["udp"] == 1
        async with await pt.connect_datagram(sock.url):
            assert table.lookups["udp4"] == 1


# -- the TLS example sits outside the core ---------------------------------------


def test_the_tls_example_is_imported_on_first_use() -> None:
    code = textwrap.dedent(
        """
        import sys
        import packeteer_trio as pt
        assert "packeteer_trio.tls" not in sys.modules, "imported with the core"
        assert "tls+tcp" in pt._registry.names()
        assert pt.URL.parse("tls+tcp://localhost:1").port == 1
        assert "packeteer_trio.tls" in sys.modules
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# -- the faces' contract with the scheduler -----------------------------------------


def test_the_face_event_bits_are_the_schedulers() -> None:
    bits = (_face.READ, _face.WRITE, _face.CLOSE)
    assert bits == (int(Events.READ), int(Events.WRITE), int(Events.CLOSE))


# -- classes: final where concrete, adapters over the abstract bases ------------


def public_classes() -> list[type]:
    found = []
    for module in (pt, anyio_compat):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and value.__module__.startswith(PACKAGE.name):
                found.append(value)
    return found


def _is_final(cls: type) -> bool:
    """``@typing.final`` marks the class from Python 3.11 on; before, read
    the decorator in the source."""
    if sys.version_info >= (3, 11):
        return bool(getattr(cls, "__final__", False))
    source = textwrap.dedent(inspect.getsource(cls))
    tree = ast.parse(source).body[0]
    assert isinstance(tree, ast.ClassDef)
    return any(ast.unparse(d).endswith("final") for d in tree.decorator_list)


# Not meant to be final: exceptions (subclassed to catch), the enum, protocols.
NOT_FINAL = (Exception, pt.Events, pt.StreamSchemeFactory, pt.DatagramSchemeFactory)


def test_public_concrete_classes_are_final() -> None:
    checked = []
    for cls in public_classes():
        if inspect.isabstract(cls) or issubclass(cls, NOT_FINAL):
            continue
        if cls.__module__ == "packeteer_trio.scheduler":
            continue  # the scheduler's own (another module's business)
        assert _is_final(cls), cls
        checked.append(cls.__name__)
    assert {"SocketStream", "PipeStream", "PacketChannel", "URL"} <= set(checked)
    assert {"WrappedStream", "WrappedListener", "URLConnectable"} <= set(checked)


def test_the_types_the_verbs_promise_are_abstract() -> None:
    abstract: list[type] = [pt.Stream, pt.Listener, pt.DatagramSocket]
    abstract += [pt.DatagramChannel, pa.Stream, pa.Listener, pa.DatagramSocket]
    abstract.append(pa.DatagramChannel)
    for cls in abstract:
        assert inspect.isabstract(cls), cls
        with pytest.raises(TypeError):
            cls()


def test_each_anyio_verb_promises_one_type_for_every_scheme() -> None:
    """inproc:// and descriptor-backed objects share the abstract type (the
    verbs' annotations say that type, not a union)."""
    pairs = {
        pa.Listener: (pa.InprocListener,),
        pa.DatagramSocket: (pa.OSDatagramSocket, pa.InprocDatagramSocket),
        pa.DatagramChannel: (pa.OSDatagramChannel, pa.InprocDatagramChannel),
        pa.Stream: (pa.InprocStream, pa.SeqpacketStream),
    }
    for base, classes in pairs.items():
        for cls in classes:
            assert issubclass(cls, base), (cls, base)
    hints = {
        verb: typing.get_type_hints(verb)["return"]
        for verb in (pa.listen, pa.open_datagram, pa.connect)
    }
    assert hints == {
        pa.listen: pa.Listener,
        pa.open_datagram: pa.DatagramSocket,
        pa.connect: pa.Stream,
    }


def test_adapters_hold_what_they_adapt() -> None:
    """No Wrapped* class inherits from a concrete class: each implements the
    abstract base the verb promises, and keeps the user's object."""
    adapters = {
        pt.WrappedStream: pt.Stream,
        pt.WrappedListener: pt.Listener,
        pt.WrappedDatagramSocket: pt.DatagramSocket,
        pt.WrappedDatagramChannel: pt.DatagramChannel,
    }
    for adapter, base in adapters.items():
        assert issubclass(adapter, base)
        for ancestor in adapter.__mro__[1:]:
            if ancestor.__module__.startswith("packeteer_trio"):
                assert inspect.isabstract(ancestor) or ancestor.__name__.startswith(
                    "_"
                ), (adapter, ancestor)
                assert not ancestor.__module__.endswith(("_stream", "_datagram")), (
                    adapter,
                    ancestor,
                )
        assert "wrapped" in inspect.signature(adapter).parameters


def test_no_placeholders_for_abstract_methods() -> None:
    """``raise NotImplementedError`` nowhere in the package: abstract methods
    are ``abc.abstractmethod``, platform limits raise real errors."""
    offenders = []
    for name, path in module_files().items():
        if name.startswith(("packeteer_trio.cli", "packeteer_trio.scheduler")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = ast.unparse(node.exc)
                if text.startswith("NotImplementedError"):
                    offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


@pytest.mark.trio
async def test_reprs_name_the_public_types() -> None:
    async with await pt.open_datagram("udp://127.0.0.1:0") as sock:
        assert repr(sock).startswith("<DatagramSocket udp4://127.0.0.1:")
        async with await pt.connect_datagram(sock.url) as chan:
            assert repr(chan).startswith("<DatagramChannel udp4://127.0.0.1:")
    async with await pt.listen("tcp://127.0.0.1:0") as listener:
        assert repr(listener).startswith("<Listener tcp4://127.0.0.1:")
    await trio.lowlevel.checkpoint()
