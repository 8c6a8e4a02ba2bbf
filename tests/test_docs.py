"""The code in the docs works: every ```python block of README.md and docs/*.md.

Each block is run as a program (tests/_doc_block.py), with one change: paths
under ``/tmp/`` are moved into a private temporary directory, so that runs
never meet. A block preceded by an HTML comment

- ``<!-- test: NAME -->`` is run or checked by ``RUNNERS[NAME]`` below (a
  server to talk to, socket activation, a network namespace, or a comparison
  with the code it quotes);
- ``<!-- not run: REASON -->`` is only compiled, and shows as skipped with the
  reason. Such exceptions are few (``MAX_NOT_RUN``).

Links: the README is also the package index's long description, so its links
are absolute; links into the repository name files that exist.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import packeteer_trio as pt
from packeteer_trio import tls

from .test_cli import ROOT, TIMEOUT, Proc, env, running

RUNNER = Path(__file__).with_name("_doc_block.py")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REPOSITORY = "https://github.com/packeteer-trio/packeteer-trio"
MAX_NOT_RUN = 2
SKIP = 77  # _doc_block.py: cannot run here (the reason on stdout)


@dataclasses.dataclass
class Block:
    path: Path
    line: int  # of the first line of code
    source: str
    kind: str | None = None  # "test", "not run" or None
    arg: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_MARKER = re.compile(r"<!--\s*(test|not run):\s*(.*?)\s*-->")


def python_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            if lines[index].strip() in ("```python", "```py"):
                start = index + 1
                end = lines.index("```", start)
                block = Block(path, start + 1, "\n".join(lines[start:end]) + "\n")
                before = [line for line in lines[:index] if line.strip()][-1:]
                marker = _MARKER.fullmatch(before[0].strip()) if before else None
                if marker:
                    block.kind, block.arg = marker.group(1), marker.group(2)
                blocks.append(block)
                index = end
            index += 1
    return blocks


BLOCKS = python_blocks()


def _platform(block: Block) -> Any:
    """The block as a test parameter; one about a POSIX-only transport (or
    systemd's socket activation) runs on POSIX only."""
    posix = [
        scheme for scheme in ("local://", "fifo://", "fd://") if scheme in block.source
    ]
    if "anyio_compat" in block.source and "anon://" in block.source:
        posix.append("anon:// on the anyio face")
    if block.kind == "test" and block.arg == "socket-activation":
        posix.append("socket activation (inherited descriptors)")
    marks = [pytest.mark.posix_only(reason=f"uses {', '.join(posix)}: POSIX-only")]
    return pytest.param(block, id=block.name, marks=marks if posix else ())


def _program(block: Block, tmp_path: Path, source: str | None = None) -> Path:
    """The block as a file whose line numbers are the Markdown file's."""
    text = (source or block.source).replace("/tmp/", f"{tmp_path.as_posix()}/")
    program = tmp_path / "block.py"
    program.write_text("\n" * (block.line - 1) + text, encoding="utf-8")
    return program


def run_block(
    block: Block,
    tmp_path: Path,
    *options: str,
    source: str | None = None,
    pass_fds: tuple[int, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run *block* (or *source*, an edited copy) to its end; fail on an error."""
    program = _program(block, tmp_path, source)
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(program), block.name, *options],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**env(), **(extra_env or {})},
        pass_fds=pass_fds,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return result


# -- blocks with their own runner ----------------------------------------------


def readme_echo(block: Block, tmp_path: Path) -> None:
    assert run_block(block, tmp_path).stdout == "b'hello'\n"


def scheduler_example(block: Block, tmp_path: Path) -> None:
    out = run_block(block, tmp_path).stdout.splitlines()
    assert out[0].split(" ", 1)[1] == f"{pt.Events.READ} b'hello'", out
    assert [line.split()[0] for line in out[1:]] == ["tick"] * 3, out


def tcp_client(block: Block, tmp_path: Path) -> None:
    """The server is the block above it, `packeteer echo`, on a free port."""
    with running("echo", "tcp4://127.0.0.1:0") as server:
        port = str(pt.URL.parse(server.bound_url()).port)
        edited = block.source.replace("7777", port)
        out = run_block(block, tmp_path, source=edited).stdout
    assert out == f"tcp4://127.0.0.1:{port} b'hi'\n"


def factory_protocols(block: Block, tmp_path: Path) -> None:
    """The protocols as shown are the exported ones, method for method."""
    shown: dict[str, Any] = {}
    exec(compile(block.source, block.name, "exec"), shown)
    for name in ("StreamSchemeFactory", "DatagramSchemeFactory"):
        real = getattr(pt, name)
        methods = [m for m in vars(real) if not m.startswith("_")]
        assert methods == [m for m in vars(shown[name]) if not m.startswith("_")]
        for method in methods:
            assert inspect.signature(
                getattr(shown[name], method), eval_str=True
            ) == inspect.signature(getattr(real, method), eval_str=True), method


def _parameters(signature: inspect.Signature) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def _defs(source: str) -> dict[str, inspect.Signature]:
    """Signatures of the functions, and methods of classes, that *source*
    defines at top level (without annotations: they may name anything)."""
    module = ast.parse(source)
    scopes: list[tuple[str, list[ast.stmt]]] = [("", module.body)]
    for node in module.body:
        if isinstance(node, ast.ClassDef):
            scopes.append((f"{node.name}.", node.body))
    found = {}
    for prefix, body in scopes:
        for node in body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            every += [arg for arg in (args.vararg, args.kwarg) if arg is not None]
            for arg in every:
                arg.annotation = None
            stub = f"def {node.name}({ast.unparse(args)}): pass"
            namespace: dict[str, Any] = {}
            exec(stub, namespace)
            found[prefix + node.name] = inspect.signature(namespace[node.name])
    return found


def register_signatures(block: Block, tmp_path: Path) -> None:
    """The functions as documented: parameters as the real ones'."""
    shown = _defs(block.source)
    assert set(shown) == {"register_scheme", "unregister_scheme"}
    for name, signature in shown.items():
        real = inspect.signature(getattr(pt, name))
        assert _parameters(signature) == _parameters(real), name


def tls_excerpt(block: Block, tmp_path: Path) -> None:
    """The excerpt quotes packeteer_trio/tls.py: every class, function
    and method it shows is there, with the same parameters."""
    shown = _defs(block.source)
    assert {"TLSScheme.connect", "TLSScheme.listen", "register"} <= set(shown)
    for qualname, signature in shown.items():
        real: Any = tls
        for part in qualname.split("."):
            real = getattr(real, part)
        assert _parameters(signature) == _parameters(inspect.signature(real)), qualname
    assert "register()" in block.source.splitlines()  # it registers itself on import
    assert pt.URL.parse("tls+tcp://localhost:1").scheme == "tls+tcp"


def _activated_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def socket_activation(block: Block, tmp_path: Path) -> None:
    """Started as by systemd: one listening socket, passed as fd 3."""
    with _activated_socket() as listener:
        argv = [sys.executable, str(RUNNER), str(_program(block, tmp_path))]
        server = subprocess.Popen(
            [*argv, block.name, "--activate", "hello"],
            pass_fds=(listener.fileno(),),
            env={**env(), "DOC_LISTEN_FD": str(listener.fileno())},
            stderr=subprocess.PIPE,
        )
        try:
            address = listener.getsockname()
            with socket.create_connection(address, timeout=TIMEOUT) as client:
                client.settimeout(TIMEOUT)
                reply = client.makefile("rb").readline()
            assert reply == b"hello from a socket-activated service\n"
            assert server.poll() is None  # still serving
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=TIMEOUT)


def activation_fallback(block: Block, tmp_path: Path) -> None:
    """Both ways: activated (a socket named web), and run by hand (then on a
    free loopback port rather than on every interface's 8080)."""
    edited = block.source.replace("tcp://0.0.0.0:8080", "tcp4://127.0.0.1:0")
    edited += "print(listener.url)\n"
    by_hand = run_block(block, tmp_path, source=edited).stdout
    assert re.fullmatch(r"tcp4://127\.0\.0\.1:\d+\n", by_hand), by_hand
    with _activated_socket() as listener:
        activated = run_block(
            block,
            tmp_path,
            "--activate",
            "web",
            source=edited,
            pass_fds=(listener.fileno(),),
            extra_env={"DOC_LISTEN_FD": str(listener.fileno())},
        ).stdout
        host, port = listener.getsockname()
    assert activated == f"tcp4://{host}:{port}\n"


def tun_example(block: Block, tmp_path: Path) -> None:
    """In a private network namespace (as tests/test_tuntap.py), with UDP
    datagrams sent into the interface; the loop runs until stopped."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tun/tap is Linux-only")
    argv = [sys.executable, str(RUNNER), str(_program(block, tmp_path)), block.name]
    proc = Proc([*argv, "--tun", "vpn0"])
    try:
        first = proc.wait_for(r".").string
        if first != "opened tun:///vpn0?mtu=1400":
            if proc.popen.wait(timeout=TIMEOUT) == SKIP:
                pytest.skip(first)
            raise AssertionError(f"{first}: {proc.stderr}")
        proc.wait_for(r"^IPv4 to 10\.200\.0\.2$")
    finally:
        proc.stop(signal.SIGKILL)


def workers_example(block: Block, tmp_path: Path) -> None:
    """Run as the script it is: the workers load it by its path (as their
    ``__main__`` module), which a block run through _doc_block.py is not."""
    if sys.platform == "win32":
        pytest.skip("worker processes are POSIX-only")
    result = subprocess.run(
        [sys.executable, str(_program(block, tmp_path))],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 16, lines
    pids = set()
    for line in lines:
        match = re.fullmatch(r"served by pid (\d+)", line)
        assert match, line
        pids.add(int(match[1]))
    if sys.platform.startswith("linux"):  # the kernel balances SO_REUSEPORT
        assert len(pids) > 1, pids


def multicast_example(block: Block, tmp_path: Path) -> None:
    """In a private network namespace with a veth pair eth0/eth0p, which
    _doc_block.py --veth creates (Linux; skipped where not allowed)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are Linux-only")
    program = _program(block, tmp_path)
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(program), block.name, "--veth", "eth0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(),
        cwd=tmp_path,
    )
    if result.returncode == SKIP:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"b'hello, group' udp4://10\.0\.0\.1:\d+\n", result.stdout)


# -- docs/http.md: httpx against tests/_http_server.py's h11 server -----------------


def _ca_files(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """(CA file for the client, key and certificate file for the server)."""
    import trustme

    ca = trustme.CA()
    cafile, keyfile = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(cafile)
    ca.issue_cert(name).private_key_and_cert_chain_pem.write_to_path(keyfile)
    return cafile, keyfile


def http_docker(block: Block, tmp_path: Path) -> None:
    """Docker's socket is a temporary one (the block's /tmp/ paths are
    moved into tmp_path) with a server answering /version as Docker does."""
    from ._http_server import H11Server

    with H11Server(f"local://{tmp_path}/docker.sock") as server:
        edited = block.source.replace("/var/run/docker.sock", "/tmp/docker.sock")
        out = run_block(block, tmp_path, source=edited).stdout
    assert out == "1.47\n"
    assert server.accepted == 1


def http_https_local(block: Block, tmp_path: Path) -> None:
    import ssl

    from ._http_server import H11Server

    cafile, keyfile = _ca_files(tmp_path, "myapp.local")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(keyfile)
    with H11Server(f"local://{tmp_path}/myapp.sock", tls=context) as server:
        edited = block.source.replace("/etc/myapp/ca.pem", f"/tmp/{cafile.name}")
        edited = edited.replace("/run/myapp.sock", "/tmp/myapp.sock")
        assert run_block(block, tmp_path, source=edited).stdout == "200\n"
    assert server.accepted == 1


def http_tls_scheme(block: Block, tmp_path: Path) -> None:
    from ._http_server import H11Server

    cafile, keyfile = _ca_files(tmp_path, "myapp.local")
    with H11Server(f"tls+tcp://127.0.0.1:0?certfile={keyfile}") as server:
        edited = block.source.replace("8443", str(server.url.port))
        edited = edited.replace("/etc/myapp/ca.pem", f"/tmp/{cafile.name}")
        assert run_block(block, tmp_path, source=edited).stdout == "200\n"
    assert server.accepted == 1


def http_fd(block: Block, tmp_path: Path) -> None:
    """Started with a socket connected to the server, as fd 3 says."""
    from ._http_server import H11Server

    with H11Server("tcp4://127.0.0.1:0") as server:
        port = server.url.port or 0
        with socket.create_connection(("127.0.0.1", port)) as sock:
            fd = sock.fileno()
            edited = block.source.replace("fd:///3", f"fd:///{fd}")
            out = run_block(block, tmp_path, source=edited, pass_fds=(fd,)).stdout
        assert out == "200\n"
    assert server.accepted == 1


# -- docs/asgi.md: the blocks serve, httpx asks -----------------------------------

# The app of docs/asgi.md's first block, for the blocks that serve "app".
ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            await send({"type": event["type"] + ".complete"})
            if event["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
"""


def _ask(server: subprocess.Popen[bytes], url: str, **client: Any) -> str:
    """A GET to *url* with packeteer_trio.http's httpx client, retried while
    the *server* is still starting (no socket file yet)."""
    from packeteer_trio import http

    async def get() -> str:
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    async with http.client(url, **client) as session:
                        return (await session.get("/")).text
                except httpx.ConnectError:
                    if server.poll() is not None:
                        raise AssertionError(server.communicate()[1].decode()) from None
                    await trio.sleep(0.05)

    return trio.run(get)


def _serving(
    block: Block, tmp_path: Path, source: str, *options: str, **popen: Any
) -> subprocess.Popen[bytes]:
    """The block (as *source*) started in the background."""
    argv = [sys.executable, str(RUNNER), str(_program(block, tmp_path, source))]
    return subprocess.Popen(
        [*argv, block.name, *options], stderr=subprocess.PIPE, **popen
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
    server.communicate(timeout=TIMEOUT)


def asgi_serve(block: Block, tmp_path: Path) -> None:
    assert run_block(block, tmp_path).stdout == "hello\n"
    assert not (tmp_path / "app.sock").exists()


def asgi_uvicorn(block: Block, tmp_path: Path) -> None:
    assert run_block(block, tmp_path).stdout == "hello from uvicorn\n"
    assert not (tmp_path / "app.sock").exists()


def asgi_https_local(block: Block, tmp_path: Path) -> None:
    """hypercorn's TLS over the unix socket; an https:// client asks."""
    import ssl

    cafile, keyfile = _ca_files(tmp_path, "myapp.local")
    # (under /tmp/: _program moves what the block names there into tmp_path)
    shown = f"/tmp/{keyfile.name}"
    edited = ASGI_APP + block.source.replace("/etc/myapp/server.pem", shown)
    edited = edited.replace("/run/myapp.sock", "/tmp/myapp.sock")
    server = _serving(block, tmp_path, edited, env=env())
    try:
        verify = ssl.create_default_context(cafile=str(cafile))
        url = f"local://{tmp_path}/myapp.sock"
        answer = _ask(server, url, verify=verify, base_url="https://myapp.local")
        assert answer == "hello"
    finally:
        _stop(server)


def asgi_activation(block: Block, tmp_path: Path) -> None:
    """Started as by systemd: a listening socket named web, as fd 3."""
    with _activated_socket() as listener:
        server = _serving(
            block,
            tmp_path,
            block.source,
            "--activate",
            "web",
            pass_fds=(listener.fileno(),),
            env={**env(), "DOC_LISTEN_FD": str(listener.fileno())},
        )
        try:
            host, port = listener.getsockname()
            assert _ask(server, f"tcp://{host}:{port}") == "hello, activated"
            assert server.poll() is None  # still serving
        finally:
            _stop(server)


RUNNERS: dict[str, Callable[[Block, Path], None]] = {
    "http-docker": http_docker,
    "http-asyncio": http_docker,
    "http-mounts": http_docker,
    "http-httpcore": http_docker,
    "http-https-local": http_https_local,
    "http-tls-scheme": http_tls_scheme,
    "http-fd": http_fd,
    "readme-echo": readme_echo,
    "scheduler-example": scheduler_example,
    "tcp-client": tcp_client,
    "factory-protocols": factory_protocols,
    "register-signatures": register_signatures,
    "tls-excerpt": tls_excerpt,
    "socket-activation": socket_activation,
    "activation-fallback": activation_fallback,
    "tun-example": tun_example,
    "workers-example": workers_example,
    "multicast-example": multicast_example,
    "asgi-serve": asgi_serve,
    "asgi-https-local": asgi_https_local,
    "asgi-activation": asgi_activation,
    "asgi-uvicorn": asgi_uvicorn,
}


# -- the tests -------------------------------------------------------------------


def test_every_block_is_accounted_for() -> None:
    assert len(BLOCKS) > 10
    markers = [block.arg for block in BLOCKS if block.kind == "test"]
    assert sorted(markers) == sorted(RUNNERS), "a marker without runner, or unused"
    not_run = [block.name for block in BLOCKS if block.kind == "not run"]
    assert len(not_run) <= MAX_NOT_RUN, not_run
    assert all(block.arg for block in BLOCKS if block.kind == "not run")


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_block_compiles(block: Block) -> None:
    compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("block", [_platform(block) for block in BLOCKS])
def test_block_runs(block: Block, tmp_path: Path) -> None:
    if block.kind == "not run":
        pytest.skip(f"{block.name} not run: {block.arg}")
    if block.kind == "test":
        RUNNERS[block.arg](block, tmp_path)
    else:
        run_block(block, tmp_path)


# -- links ---------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_links_are_absolute() -> None:
    """On the package index a relative link leads nowhere."""
    links = _LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert links
    assert [link for link in links if not link.startswith("https://")] == []


def test_repository_links_name_files_that_exist() -> None:
    texts = [
        path.read_text(encoding="utf-8") for path in (*DOCS, ROOT / "pyproject.toml")
    ]
    links = [link for text in texts for link in re.findall(r"https://[^\s)\"']+", text)]
    ours = [link.rstrip(".,;") for link in links if link.startswith(REPOSITORY)]
    assert len(ours) > 10
    for link in ours:
        match = re.fullmatch(
            re.escape(REPOSITORY)
            + r"(?:/(?:blob|tree)/main/([^#]+))?(?:/issues)?(?:#.*)?",
            link,
        )
        assert match, f"not a link to this repository's main branch: {link}"
        if match.group(1):
            assert (ROOT / match.group(1)).exists(), link
