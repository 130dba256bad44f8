"""Build hook (the metadata is in pyproject.toml): ship what ``accord zk`` needs in the wheel.

The circuit sources and the npm manifest with its lock file live at the repository's top level
(``circuits/``, ``package.json``, ``package-lock.json``), where ``npm ci`` and the circuit
authors expect them; a wheel gets copies under ``accord/zk/assets`` so that an installed SDK
compiles the same circuits and ``accord zk setup`` installs the same pinned tools. An editable
install gets none: it reads them from the checkout.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ASSETS = ("package.json", "package-lock.json", "circuits/*.circom")


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dst = Path(self.build_lib) / "accord" / "zk" / "assets"
        for pattern in ASSETS:
            found = sorted(ROOT.glob(pattern))
            if not found:
                raise SystemExit(f"setup.py: nothing matches {pattern} in {ROOT}")
            for src in found:
                out = dst / src.relative_to(ROOT)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out)


setup(cmdclass={"build_py": BuildWithAssets})
