#!/usr/bin/env python3
"""The generalist nuclei model and the StarDist peer side by side, on the same validation images,
from the JSON files their benchmarks wrote (nothing is run again):

    .venv/bin/python bench/table_vs_peer.py \\
        --ours runs/nuclei_gen_a/eval_val_cal.json runs/nuclei_gen_a/eval_robust.json \\
        --peer runs/peer_stardist_3000/peer_stardist.json

``--ours``: ``bench/eval_generalist.py eval --out`` files (the ``auto`` rows: the model's own size
estimate, as ``morphoscope predict`` runs by default); ``--peer``: ``bench/peer_stardist.py``'s
``peer_stardist.json``. Prints a Markdown table: pooled F1@0.5 and AP@0.9 (TP/(TP+FP+FN) at IoU
0.9), the mean per-image F1@0.5 and the DSB score (per-image mean AP over IoU 0.5:0.95); a row
is marked where the peer is ahead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = [  # (label, our result key, our group, peer set, peer modality)
    ("BBBC039 validation", "bbbc039/auto", None, "bbbc039", None),
    ("DSB2018 val split", "dsb2018/auto", None, "dsb2018", None),
    ("— fluorescence", "dsb2018/auto", "fluorescence", "dsb2018", "fluorescence"),
    ("— histology (H&E)", "dsb2018/auto", "histology", "dsb2018", "histology"),
    ("— brightfield", "dsb2018/auto", "brightfield", "dsb2018", "brightfield"),
    ("BBBC039 val ×0.5", "bbbc039_x0.5/auto", None, "bbbc039_x0.5", None),
    ("BBBC039 val ×2", "bbbc039_x2/auto", None, "bbbc039_x2", None),
    ("BBBC039 val inverted", "bbbc039_inv/auto", None, "bbbc039_inv", None),
]
METRICS = ("f1@0.5", "ap@0.9", "per_image_f1@0.5", "dsb_score")


def ours_row(results: dict, key: str, group: str | None) -> dict | None:
    r = results.get(key)
    if r is None:
        return None
    if group is not None:
        r = r.get("groups", {}).get(group)
        if r is None:
            return None
    return {"images": r["images"], **{m: r.get(m) for m in METRICS}}


def peer_row(sets: dict, name: str, modality: str | None) -> dict | None:
    s = sets.get(name)
    if s is None:
        return None
    if modality is not None:
        m = s.get("per_modality", {}).get(modality)
        if m is None:
            return None
        return {"images": m["images"], "f1@0.5": None, "ap@0.9": None,
                "per_image_f1@0.5": m["per_image"]["f1@0.5"], "dsb_score": m["dsb_score"]}
    return {"images": s["images"], "f1@0.5": s["pooled"]["f1@0.5"], "ap@0.9": s["pooled"]["ap@0.9"],
            "per_image_f1@0.5": s["per_image"]["f1@0.5"], "dsb_score": s["dsb_score"]}


def cell(a, b) -> str:
    if a is None and b is None:
        return "–"
    fa = "–" if a is None else f"{a:.3f}"
    fb = "–" if b is None else f"{b:.3f}"
    lead = a is not None and b is not None and b > a
    return f"{fa} / {fb}" + (" ◀" if lead else "")


def table(ours: dict, peer: dict) -> str:
    lines = ["| set (images) | F1@0.5 | AP@0.9 | per-image F1@0.5 | DSB score |",
             "|---|---|---|---|---|"]
    for label, key, group, pset, modality in ROWS:
        a, b = ours_row(ours, key, group), peer_row(peer.get("sets", {}), pset, modality)
        if a is None and b is None:
            continue
        n = (a or b)["images"]
        lines.append(f"| {label} ({n}) | " + " | ".join(cell((a or {}).get(m), (b or {}).get(m)) for m in METRICS)
                     + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", nargs="+", type=Path, required=True)
    ap.add_argument("--peer", type=Path, required=True)
    args = ap.parse_args(argv)
    results: dict = {}
    for p in args.ours:
        results.update(json.loads(p.read_text())["results"])
    peer = json.loads(args.peer.read_text())
    cpu = peer.get("train_cpu_seconds")
    cpu = cpu.get("train") if isinstance(cpu, dict) else cpu
    print(f"morphoscope `nuclei` / StarDist (trained on {peer.get('train')}, "
          f"{f'{cpu:.0f}' if cpu else '?'} CPU-s in its training loop); ◀ = the peer is ahead\n")
    print(table(results, peer))


if __name__ == "__main__":
    main()
