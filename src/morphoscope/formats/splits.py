"""Split list files: which samples of a dataset belong to a split, and a group (e.g. imaging
modality) per sample.

``NAME.txt``  one sample name per line (a Kaggle image id, or an image file's stem); blank lines
              and ``#`` comments are ignored (configs/splits/dsb2018_train.txt).
``NAME.csv``  a table with a header; one column names the sample (default: the first), another
              gives its group (configs/splits/dsb2018_modality.csv: ``ImageId,modality,...``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from morphoscope.errors import InputError


def read_split_list(path: str | Path) -> list[str]:
    """The sample names of a split list file, in file order (duplicates refused)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError("split list file not found", path=path) from None
    except UnicodeDecodeError:
        raise InputError("split list file is not text", path=path) from None
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dup:
        raise InputError(f"split list names {len(dup)} sample(s) twice: {', '.join(dup[:3])}", path=path)
    if not names:
        raise InputError("split list file names no sample", path=path)
    return names


def read_group_table(path: str | Path, column: str, *, key: str | None = None) -> dict[str, str]:
    """``{sample name: value of column}`` from a CSV table with a header (``key``: the column
    naming the sample; default the first)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise InputError("group table not found", path=path) from None
    if not fields:
        raise InputError("group table has no header", path=path)
    key = key or fields[0]
    for c in (key, column):
        if c not in fields:
            raise InputError(f"group table has no column '{c}' (columns: {', '.join(fields)})", path=path)
    return {r[key]: r[column] for r in rows}


def select_names(available: list[str], wanted: list[str], *, where: str | Path) -> list[str]:
    """``wanted`` (a split list) checked against the names a dataset has: every listed sample must
    exist (a typo or a wrong dataset folder would silently shrink the split otherwise)."""
    have = set(available)
    missing = [n for n in wanted if n not in have]
    if missing:
        raise InputError(f"{len(missing)} sample(s) of the split list are not in the dataset: "
                         f"{', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""), path=where)
    return list(wanted)
