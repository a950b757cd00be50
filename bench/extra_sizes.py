"""What each extra adds to a core install, in installed MB (docs/install.md): pip's dry-run report
in the core venv of what ``morphoscope[EXTRA]`` would install, each distribution sized from its
RECORD in the [all] venv (both made by bench/measure_install.sh). Run from the project root:

    .venv/bin/python bench/extra_sizes.py /tmp/msv-core /tmp/msv-all
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path


def purelib(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def main() -> None:
    core, full = Path(sys.argv[1]), Path(sys.argv[2])
    wheel = sorted(glob.glob("/tmp/msv-wheel/morphoscope-*.whl"))[-1]
    site = purelib(full)
    sizes = {}
    for d in distributions(path=[str(site)]):
        sizes[d.metadata["Name"].lower().replace("_", "-")] = sum(
            (site / f).stat().st_size for f in (d.files or []) if (site / f).exists())
    for extra in ["web", "parquet", "tune", "export", "napari", "all"]:
        rep = json.loads(subprocess.run([str(core / "bin" / "pip"), "install", "--dry-run", "--quiet", "--report", "-",
                                         f"morphoscope[{extra}] @ file://{wheel}"],
                                        capture_output=True, text=True, check=True).stdout)
        names = sorted(i["metadata"]["name"].lower().replace("_", "-") for i in rep["install"]
                       if i["metadata"]["name"] != "morphoscope")
        mb = sum(sizes.get(n, 0) for n in names) / 2**20
        print(f"[{extra}] +{mb:.0f} MB, {len(names)} distributions: {' '.join(names[:10])}{' ...' if len(names) > 10 else ''}")


if __name__ == "__main__":
    main()
