"""The package's identity: one version everywhere, the declared license."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import sysconfig

import pytest

import packeteer_trio

from .test_cli import ROOT, TIMEOUT, env

DISTRIBUTION = "packeteer-trio"


def test_version_is_the_installed_distributions() -> None:
    assert packeteer_trio.__version__ == importlib.metadata.version(DISTRIBUTION)


def test_cli_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "packeteer_trio", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"packeteer {packeteer_trio.__version__}\n"


@pytest.mark.wine_differs(
    reason="pip's console-script launcher (distlib's t64.exe) exits 1 without "
    "a word under Wine 8"
)
def test_console_script_version() -> None:
    # Beside the interpreter (bin/), or in Scripts\ on Windows.
    script = shutil.which("packeteer", path=sysconfig.get_path("scripts"))
    assert script, "the console script is installed with the interpreter"
    result = subprocess.run(
        [script, "--version"],
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
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
