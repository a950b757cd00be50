#!/usr/bin/env python3
"""The generalist nuclei model and the StarDist peer side by side, on the same validation images,
from the JSON files their benchmarks wrote (nothing is run again):

    .venv/bin/python bench/table_vs_peer.py \\
        --ours runs/nuclei_gen_a/eval_val_cal.json runs/nuclei_gen_a/eval_robust.json \\
        --peer runs/peer_stardist_3000/peer_stardist.json

``--ours``: ``bench/eval_generalist.py eval --out`` files (the ``auto`` rows: the model's own size
estimate, as ``morphoscope predict`` runs by default); ``--peer``: ``bench/peer_stardist.py``'s
``peer_stardist.json`` (and ``bench/peer_cellpose.py``'s ``peer_cellpose.json``). Prints a Markdown table: pooled F1@0.5 and AP@0.9 (TP/(TP+FP+FN) at IoU
0.9), the mean per-image F1@0.5 and the DSB score (per-image mean AP over IoU 0.5:0.95); a row
is marked where a peer is ahead.
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


def cell(a, peers) -> str:
    if a is None and all(b is None for b in peers):
        return "–"
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lead = a is not None and any(b is not None and b > a for b in peers)
    return " / ".join([fmt(a)] + [fmt(b) for b in peers]) + (" ◀" if lead else "")


def table(ours: dict, peers: list[dict]) -> str:
    lines = ["| set (images) | F1@0.5 | AP@0.9 | per-image F1@0.5 | DSB score |",
             "|---|---|---|---|---|"]
    for label, key, group, pset, modality in ROWS:
        a = ours_row(ours, key, group)
        bs = [peer_row(peer.get("sets", {}), pset, modality) for peer in peers]
        if a is None and all(b is None for b in bs):
            continue
        n = (a or next(b for b in bs if b))["images"]
        lines.append(f"| {label} ({n}) | " + " | ".join(
            cell((a or {}).get(m), [(b or {}).get(m) for b in bs]) for m in METRICS) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", nargs="+", type=Path, required=True)
    ap.add_argument("--peer", nargs="+", type=Path, required=True, help="peer_stardist.json, peer_cellpose.json, ...")
    args = ap.parse_args(argv)
    results: dict = {}
    for p in args.ours:
        results.update(json.loads(p.read_text())["results"])
    peers = [json.loads(p.read_text()) for p in args.peer]
    names = []
    for peer in peers:
        cpu = peer.get("train_cpu_seconds")
        cpu = cpu.get("train") if isinstance(cpu, dict) else cpu
        names.append(f"{peer.get('peer', 'peer')} (trained on {peer.get('train')}, "
                     f"{f'{cpu:.0f}' if cpu else '?'} CPU-s in its training loop)")
    print(f"morphoscope `nuclei` / {' / '.join(names)}; ◀ = a peer is ahead\n")
    print(table(results, peers))


if __name__ == "__main__":
    main()
