"""Exits 0 when the realtime_bridge that python3 imports is this directory's source (same version,
same files), else 1: the install scripts reinstall only then."""

import filecmp
import importlib.metadata
import importlib.util
import pathlib
import re
import sys

here = pathlib.Path(__file__).resolve().parent
source = here / "src" / "realtime_bridge"
spec = importlib.util.find_spec("realtime_bridge")
if spec is None or spec.origin is None:
    sys.exit(1)
installed = pathlib.Path(spec.origin).parent
if installed.resolve() == source.resolve():
    sys.exit(1)  # the source tree itself is on sys.path: not an install
version = re.search(r'(?m)^version = "([^"]+)"', (here / "pyproject.toml").read_text()).group(1)
try:
    if importlib.metadata.version("realtime-bridge") != version:
        sys.exit(1)
except importlib.metadata.PackageNotFoundError:
    sys.exit(1)
files = [p.relative_to(source) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
same = all((installed / f).is_file() and filecmp.cmp(source / f, installed / f, shallow=False) for f in files)
sys.exit(0 if same else 1)
