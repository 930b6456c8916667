"""What a user gets from `pip install` and `import lucid` (issue 19): the public names without
extra imports, a light import, `python -m lucid`, one version, the typing marker."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import lucid

PROBE = """
import json, sys
import lucid
loaded_before_use = {m: m in sys.modules for m in ("cffi", "jinja2")}
names = {n: hasattr(lucid, n) for n in
         ("nn", "optim", "ir", "errors", "compile", "export", "save", "load", "Tensor")}
layer = lucid.nn.Linear(2, 3)
print(json.dumps({"names": names, "heavy": loaded_before_use,
                  "linear": type(layer).__name__, "sgd": lucid.optim.SGD.__name__}))
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_lucid_gives_the_public_api_and_stays_light() -> None:
    run = _python("-c", PROBE)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert all(seen["names"].values()), seen["names"]
    assert seen["heavy"] == {"cffi": False, "jinja2": False}  # loaded at first use
    assert seen["linear"] == "Linear" and seen["sgd"] == "SGD"


def test_python_dash_m_lucid_is_the_cli() -> None:
    run = _python("-m", "lucid", "--version")
    assert run.returncode == 0 and run.stdout.strip() == f"lucid-ir {lucid.__version__}"
    usage = _python("-m", "lucid")
    assert usage.returncode == 2 and "usage: lucid-ir" in usage.stderr


def test_one_version_and_the_typing_marker() -> None:
    assert importlib.metadata.version("lucid-compiler") == lucid.__version__
    assert (Path(lucid.__file__).parent / "py.typed").is_file()
    files = importlib.metadata.files("lucid-compiler") or []
    licenses = [f for f in files if f.name == "LICENSE"]
    assert licenses, "the LICENSE file is not in the installed distribution"
