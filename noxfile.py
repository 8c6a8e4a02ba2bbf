"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``.

``nox -s docs`` builds the documentation, ``nox -s bench [-- NAME ... --rounds N]``
runs the benchmarks (neither by default).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff", "import-linter", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    for platform in ("linux", "darwin", "win32"):
        session.run("mypy", "--strict", "--platform", platform)


@nox.session
def docs(session: nox.Session) -> None:
    """The Sphinx site (guides and API reference) in docs/_build/html."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """The comparisons of benchmarks/ (python -m benchmarks); args pass through."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
