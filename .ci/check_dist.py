"""What `python -m build` made is what we mean to publish: ``python
.ci/check_dist.py dist``. One sdist and one wheel of this version; the license
file in both; the sdist without tests (see MANIFEST.in); the metadata with the
SPDX license and the project URLs; a long description (the README) whose
links all work on a package index, i.e. are absolute."""

from __future__ import annotations

import email
import re
import sys
import tarfile
import zipfile
from pathlib import Path

dist = Path(sys.argv[1])
pyproject = Path("pyproject.toml").read_text()
version = re.search(r'^version = "(.+)"$', pyproject, re.MULTILINE).group(1)  # type: ignore[union-attr]
[sdist] = dist.glob("*.tar.gz")
[wheel] = dist.glob("*.whl")
assert sdist.name == f"packeteer_trio-{version}.tar.gz", sdist
assert wheel.name == f"packeteer_trio-{version}-py3-none-any.whl", wheel

with tarfile.open(sdist) as tar:
    names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
for needed in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"):
    assert needed in names, f"{sdist.name} lacks {needed}"
assert "packeteer_trio/py.typed" in names
assert not [name for name in names if name.startswith("tests/")], "tests shipped"

with zipfile.ZipFile(wheel) as whl:
    names = set(whl.namelist())
    info = f"packeteer_trio-{version}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "packeteer_trio/py.typed" in names
    metadata = email.message_from_bytes(whl.read(f"{info}/METADATA"))
assert metadata["License-Expression"] == "MIT", metadata["License-Expression"]
assert metadata["License-File"] == "LICENSE"
assert metadata["Description-Content-Type"] == "text/markdown"
urls = metadata.get_all("Project-URL")
assert urls and all("https://" in url for url in urls), urls
description = metadata.get_payload()
links = re.findall(r"\]\(([^)\s]+)\)", description)
relative = [link for link in links if not link.startswith("https://")]
assert links and not relative, f"links that break on a package index: {relative}"
print(f"{sdist.name}, {wheel.name}: contents and metadata as intended")
