"""One worker process: naming its target, starting it, hearing from it, stopping it.

A worker is ``python -m packeteer_trio.workers SPEC`` (see ``__main__``).
Between supervisor and worker runs a *lifeline*, one end of a socketpair
each: the worker reports on it that it is ready (and where it listens), and
each side sees the other's end close when that process dies, however it
died. A worker whose lifeline closes stops; the supervisor reaps a worker
whose lifeline closed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import trio

#: What a worker runs: ``await target(url, *args, task_status=...)``, which
#: calls ``task_status.started(...)`` once it serves (as ``serve`` does).
Target = Callable[..., Awaitable[object]]
#: Values a worker's extra arguments may take: they cross as JSON.
Argument = str | int | float | bool | None

# The systemd variables, which the worker sets itself for the shared socket.
_ACTIVATION = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "LISTEN_FDS_START")
ENV_INDEX = "PACKETEER_WORKER"


def target_spec(target: Target | str) -> dict[str, str]:
    """How a worker finds *target*: ``"module:function"``, or a function
    defined at the top level of a module (or of the main script)."""
    if isinstance(target, str):
        name, colon, attribute = target.partition(":")
        if not (name and colon and attribute):
            raise ValueError(
                f"target {target!r}: write it as 'package.module:function'"
            )
        spec = {"module": name, "qualname": attribute}
        load_target(spec)  # fail here, not in every worker
        return spec
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise ValueError(
            f"target {target!r}: a worker process can only run a function defined "
            "at the top level of a module (or pass 'module:function')"
        )
    if module != "__main__":
        return {"module": module, "qualname": qualname}
    path = getattr(sys.modules["__main__"], "__file__", None)
    if path is None:
        raise ValueError(
            f"target {target!r} is defined in an interactive session: put it in "
            "a module or a script"
        )
    return {"module": "__main__", "qualname": qualname, "path": os.path.abspath(path)}


def load_target(spec: dict[str, str]) -> Target:
    """The function *spec* names; in a worker, a main script is loaded as the
    module ``__packeteer_main__`` (its ``if __name__ == "__main__"`` block
    does not run again)."""
    if spec["module"] == "__main__":
        name = "__packeteer_main__"
        module = sys.modules.get(name)
        if module is None:
            location = importlib.util.spec_from_file_location(name, spec["path"])
            if location is None or location.loader is None:
                raise ValueError(f"cannot load the main script {spec['path']}")
            module = importlib.util.module_from_spec(location)
            sys.modules[name] = module
            location.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(spec["module"])
        except ImportError as exc:
            raise ValueError(f"target: cannot import {spec['module']}: {exc}") from exc
    found: object = module
    for part in spec["qualname"].split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"target: {spec['module']} has no {spec['qualname']}")
    if not callable(found):
        raise ValueError(f"target: {spec['module']}:{spec['qualname']} is not callable")
    return cast(Target, found)


@dataclasses.dataclass
class Worker:
    """A started worker process and the supervisor's end of its lifeline."""

    index: int
    popen: subprocess.Popen[bytes]
    lifeline: trio.socket.SocketType
    hung_up: bool = False  # its end of the lifeline closed: it is ending

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def ready(self) -> list[str] | None:
        """The URLs the worker reported once serving, or None if it ended
        (closed its lifeline) first."""
        buffer = b""
        while b"\n" not in buffer:
            data = await self.lifeline.recv(65536)
            if not data:
                self.hung_up = True
                return None
            buffer += data
        message = json.loads(buffer.partition(b"\n")[0])
        return [str(url) for url in message.get("ready", [])]

    async def ended(self) -> int:
        """Wait for the worker to end; its exit status (-N: killed by signal N)."""
        while await self.lifeline.recv(65536):
            pass  # nothing more is said after "ready"
        self.hung_up = True
        return await self.reaped()

    async def reaped(self) -> int:
        # The lifeline closes as the process exits, a moment before it can
        # be reaped; a worker that closed it by itself is polled until it
        # ends. No thread is kept waiting in waitpid().
        delay = 0.001
        while (status := self.popen.poll()) is None:
            await trio.sleep(delay)
            delay = min(delay * 2, 0.25)
        return status

    async def stop(self, timeout: float) -> int:
        """SIGTERM (unless it is ending already), SIGKILL if it still runs
        *timeout* seconds later; reap it. Shielded: a cancelled supervisor
        still leaves no worker behind."""
        status: int | None = None
        with trio.CancelScope(shield=True):
            try:
                if self.popen.poll() is None and not self.hung_up:
                    self.popen.send_signal(signal.SIGTERM)
                with trio.move_on_after(timeout):
                    await self.reaped()
                if self.popen.poll() is None:
                    self.popen.kill()
                status = await self.reaped()
            finally:
                self.lifeline.close()
        assert status is not None  # a shielded scope is never cancelled
        return status


def spawn(
    index: int,
    spec: dict[str, object],
    shared: Sequence[int],
) -> Worker:
    """Start worker *index*; *shared* are the listening descriptors it inherits.

    subprocess.Popen is called right here, in the supervisor's own thread,
    not through trio.run_process: that forks from a worker thread, and Linux
    delivers PR_SET_PDEATHSIG when the *thread* that forked the child ends,
    which trio's idle threads do after a few seconds.
    """
    if sys.platform == "win32":  # pragma: no cover
        raise AssertionError("workers are POSIX-only")
    ours, theirs = socket.socketpair()
    try:
        argv = {
            **spec,
            "index": index,
            "supervisor": os.getpid(),
            "lifeline": theirs.fileno(),
            "shared": list(shared),
        }
        env = {k: v for k, v in os.environ.items() if k not in _ACTIVATION}
        env[ENV_INDEX] = str(index)
        popen = subprocess.Popen(
            [sys.executable, "-m", "packeteer_trio.workers", json.dumps(argv)],
            stdin=subprocess.DEVNULL,
            pass_fds=[theirs.fileno(), *shared],
            env=env,
            # Its own session: the terminal's Ctrl-C reaches the supervisor
            # only, which then stops the workers in order.
            start_new_session=True,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Worker(index, popen, trio.socket.from_stdlib_socket(ours))


def describe_status(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"
