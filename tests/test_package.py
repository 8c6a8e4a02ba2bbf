"""The package's identity: one version everywhere, the declared license."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import packeteer_trio

from .test_cli import ROOT, TIMEOUT, env

DISTRIBUTION = "packeteer-trio"


def test_version_is_the_installed_distributions() -> None:
    assert packeteer_trio.__version__ == importlib.metadata.version(DISTRIBUTION)


def test_cli_version() -> None:
    script = shutil.which("packeteer", path=str(Path(sys.executable).parent))
    assert script, "the console script is installed next to the interpreter"
    for argv in ([script], [sys.executable, "-m", "packeteer_trio"]):
        result = subprocess.run(
            [*argv, "--version"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env(),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"packeteer {packeteer_trio.__version__}\n"


def test_license_is_mit_as_declared() -> None:
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    assert metadata["License-Expression"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
