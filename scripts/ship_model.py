"""Package a trained model for shipping inside morphoscope (models/weights/STEM.safetensors with
half-precision weights + STEM.json with everything else), with its validation metrics, the
out-of-distribution statistics and a model card.

    .venv/bin/python scripts/ship_model.py runs/nuclei_gen_a/tuned.pt --stem nuclei_fpn_r18_generalist \\
        --eval runs/nuclei_gen_a/eval_val.json --ood runs/nuclei_gen_a/ood.json \\
        --card-json runs/nuclei_gen_a/card.json

``--eval``: the JSON of ``bench/eval_generalist.py eval --out`` (validation sets only): its
headline numbers become the model's ``metrics`` (what ``morphoscope models`` and the web app
show). ``--ood``: the JSON of ``bench/ood_generalist.py calibrate`` (statistics and threshold go
into ``extra.ood``). ``--card-json``: fields merged into the card (trained_on, description,
recipe, machine, training CPU seconds, ...). The file sizes are printed; keep the weights under
30 MB.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from morphoscope.models.checkpoint import WEIGHTS_DIR, read_checkpoint, save_shipped


def _round(value, digits: int = 6):
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return value


def headline(ev: dict) -> dict:
    """Validation numbers of an eval JSON: per set and scale mode, F1@0.5, AP@0.9, DSB score."""
    out = {}
    for key, r in ev["results"].items():
        name = key.replace("/auto", "")
        out[f"{name}/f1@0.5"] = r["f1@0.5"]
        out[f"{name}/ap@0.9"] = r["ap@0.9"]
        out[f"{name}/dsb_score"] = r["dsb_score"]
        for g, gr in r.get("groups", {}).items():
            out[f"{name}/{g}/f1@0.5"] = gr["f1@0.5"]
    if "bbbc039/auto" in ev["results"]:  # what single-number displays show
        out["f1@0.5"] = ev["results"]["bbbc039/auto"]["f1@0.5"]
        out["dataset"] = "BBBC039 validation (more in the keys per set)"
    return _round(out, 4)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--stem", required=True, help="file stem in src/morphoscope/models/weights")
    ap.add_argument("--eval", help="bench/eval_generalist.py eval --out JSON (validation)")
    ap.add_argument("--ood", help="bench/ood_generalist.py calibrate --out JSON")
    ap.add_argument("--card-json", help="JSON object merged into the model card")
    ap.add_argument("--out-dir", default=str(WEIGHTS_DIR))
    args = ap.parse_args(argv)

    ckpt = read_checkpoint(Path(args.checkpoint))
    for k in ("optimizer", "scheduler", "scaler", "history", "epoch", "best"):
        ckpt.pop(k, None)
    extra = dict(ckpt.get("extra") or {})
    extra["source_versions"] = ckpt.get("versions", {})
    if args.ood:
        ood = json.loads(Path(args.ood).read_text())
        extra["ood"] = _round(ood["stats"])
    ckpt["extra"] = extra
    epoch = (ckpt.get("metrics") or {}).get("epoch")
    if args.eval:
        ev = json.loads(Path(args.eval).read_text())
        ckpt["metrics"] = {**headline(ev), "epoch": epoch, "machine": ev.get("machine")}
    card = dict(ckpt.get("card") or {})
    if args.card_json:
        card.update(json.loads(Path(args.card_json).read_text()))
    ckpt["card"] = card
    weights, meta = save_shipped(Path(args.out_dir) / args.stem, ckpt)
    for p in (weights, meta):
        print(f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
