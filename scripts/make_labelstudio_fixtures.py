"""Make the real Label Studio exports in tests/data/labelstudio/ (see its README.md).

Runs against a live Label Studio server (tested with label-studio 1.23.2 from PyPI) in a scratch
virtual environment outside the project, never the project's own:

    python3 -m venv /tmp/lsvenv && /tmp/lsvenv/bin/pip install label-studio==1.23.2
    # telemetry off: the machine reaches nothing but package registries
    SENTRY_DSN= FRONTEND_SENTRY_DSN= COLLECT_ANALYTICS=false \
    /tmp/lsvenv/bin/label-studio start --no-browser --data-dir /tmp/lsdata \
        --internal-host 127.0.0.1 -p 8089 --username fixtures@example.org \
        --password fixtures-pass-123 --user-token 0123456789abcdef0123456789abcdef01234567 \
        --enable-legacy-api-token
    /tmp/lsvenv/bin/pip install tifffile
    /tmp/lsvenv/bin/python scripts/make_labelstudio_fixtures.py \
        --pair tests/data/bbbc039-pair --out tests/data/labelstudio

What it does, through Label Studio's HTTP API only:
1. Two BBBC039 validation images (12-bit TIFF) become 8-bit PNGs (min-max scaled), the form a
   user uploads (Label Studio's browser view shows PNG, not 16-bit TIFF). Their ground-truth
   instance labels are copied, and each object gets a class by area: "small nucleus" below the
   median area of the two images' objects, "large nucleus" otherwise. ``--pair`` receives these
   as a morphoscope labels dataset (images/, labels/, labels/classes.json): the reference.
2. Five projects: polygons (PolygonLabels), brush (BrushLabels), boxes (RectangleLabels),
   points (KeyPointLabels, with the model_index that Label Studio's COCO export requires) and
   one left unannotated. The PNGs are uploaded into each, so Label Studio names them ``/data/upload/<project>/<8 hex>-NAME.png``.
3. One annotation per task is posted, with one result per object: polygons traced exactly along
   the pixel borders of each object (vertices on pixel corners), brush masks encoded with
   label-studio-sdk's own ``brush.mask2rle``, the objects' bounding boxes and their centroids.
4. Every export format the server offers is downloaded as the server sends it (JSON, JSON_MIN,
   COCO, COCO_WITH_IMAGES, BRUSH_TO_PNG, BRUSH_TO_COCO, and BRUSH_TO_COCO of the polygon project,
   which the web UI does not offer), plus the project's label config as ``label_config.xml``.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import requests
from fixture_tools import IMAGES, fill_polygon, make_pair, trace_polygon
from label_studio_sdk.converter.brush import mask2rle

# two of the smaller validation images (24 + 43 nuclei, 22 of them on the image border), so that
# every export of them stays commit-sized
CONFIGS = {
    "polygons": """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image">
    <Label value="small nucleus" background="#1f77b4"/>
    <Label value="large nucleus" background="#ff7f0e"/>
  </PolygonLabels>
</View>""",
    "brush": """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image">
    <Label value="small nucleus" background="#1f77b4"/>
    <Label value="large nucleus" background="#ff7f0e"/>
  </BrushLabels>
</View>""",
    "boxes": """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="small nucleus"/>
    <Label value="large nucleus"/>
  </RectangleLabels>
</View>""",
    "points": """<View>
  <Image name="image" value="$image"/>
  <KeyPointLabels name="point" toName="image">
    <Label value="small nucleus" model_index="0"/>
    <Label value="large nucleus" model_index="1"/>
  </KeyPointLabels>
</View>""",
    "empty": """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image">
    <Label value="small nucleus"/>
    <Label value="large nucleus"/>
  </PolygonLabels>
</View>""",
}
EXPORTS = {
    "polygons": ["JSON", "JSON_MIN", "COCO", "COCO_WITH_IMAGES", "BRUSH_TO_COCO"],
    "brush": ["JSON", "JSON_MIN", "BRUSH_TO_PNG", "BRUSH_TO_COCO"],
    "boxes": ["JSON", "JSON_MIN", "COCO"],
    "points": ["JSON_MIN", "COCO"],
    "empty": ["JSON", "COCO"],
}


class Client:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kw):
        r = self.session.request(method, f"{self.url}{path}", timeout=600, **kw)
        r.raise_for_status()
        return r


def results_for(kind: str, labels: np.ndarray, classes: dict[int, str]) -> list[dict]:
    h, w = labels.shape
    out = []
    for i in sorted(classes):
        mask = labels == i
        cls = classes[i]
        common = {"id": f"obj{i:04d}", "to_name": "image", "original_width": w,
                  "original_height": h, "image_rotation": 0, "origin": "manual"}
        if kind in ("polygons",):
            pts = trace_polygon(mask)
            if not np.array_equal(fill_polygon(pts, h, w), mask):
                raise AssertionError(f"traced polygon of object {i} does not fill its mask")
            out.append({**common, "type": "polygonlabels", "from_name": "label", "value": {
                "points": [[x / w * 100, y / h * 100] for x, y in pts], "closed": True,
                "polygonlabels": [cls]}})
        elif kind == "brush":
            out.append({**common, "type": "brushlabels", "from_name": "tag", "value": {
                "format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255),
                "brushlabels": [cls]}})
        elif kind == "boxes":
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            out.append({**common, "type": "rectanglelabels", "from_name": "box", "value": {
                "x": x0 / w * 100, "y": y0 / h * 100, "width": (x1 - x0) / w * 100,
                "height": (y1 - y0) / h * 100, "rotation": 0, "rectanglelabels": [cls]}})
        elif kind == "points":
            ys, xs = np.nonzero(mask)
            out.append({**common, "type": "keypointlabels",
                        "from_name": "point", "value": {
                            "x": (xs.mean() + 0.5) / w * 100, "y": (ys.mean() + 0.5) / h * 100,
                            "width": 0.3, "keypointlabels": [cls]}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8089")
    ap.add_argument("--token", default="0123456789abcdef0123456789abcdef01234567")
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/bbbc039/validation"))
    ap.add_argument("--pair", type=Path, required=True, help="where the two source images and labels go")
    ap.add_argument("--out", type=Path, required=True, help="where the exports go")
    args = ap.parse_args()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    labels_of, classes_of = make_pair(args.data, args.pair)
    src = args.pair
    client = Client(args.url, args.token)
    version = client.call("GET", "/api/version").json()
    manifest = {"label_studio": version.get("release") or version.get("label-studio-os-package", {}).get("version"),
                "projects": {}}
    for kind, config in CONFIGS.items():
        proj = client.call("POST", "/api/projects", json={"title": f"morphoscope {kind}", "label_config": config}).json()
        pid = proj["id"]
        for name in IMAGES:
            with open(src / "images" / f"{name}.png", "rb") as fh:
                client.call("POST", f"/api/projects/{pid}/import", files={"file": (f"{name}.png", fh, "image/png")})
        tasks = client.call("GET", f"/api/tasks?project={pid}&page_size=100").json()["tasks"]
        for task in tasks:
            stored = task["data"]["image"].rsplit("/", 1)[-1]
            name = re.sub(r"^[0-9a-f]{8}-", "", stored)[: -len(".png")]
            if kind != "empty":
                result = results_for(kind, labels_of[name], classes_of[name])
                client.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": 1.0})
        proj_dir = out / kind
        proj_dir.mkdir(parents=True)
        (proj_dir / "label_config.xml").write_text(config + "\n")
        files = []
        for fmt in EXPORTS[kind]:
            r = client.call("GET", f"/api/projects/{pid}/export", params={"exportType": fmt, "download_all_tasks": "true"})
            disposition = r.headers.get("Content-Disposition", "")
            m = re.search(r'filename="?([^";]+)"?', disposition)
            suffix = Path(m.group(1)).suffix if m else ".bin"
            target = proj_dir / f"{fmt}{suffix}"
            target.write_bytes(r.content)
            files.append(target.name)
            if suffix == ".zip":
                with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                    print(kind, fmt, zf.namelist()[:4], len(zf.namelist()))
            else:
                print(kind, fmt, target.name, len(r.content))
        manifest["projects"][kind] = {"id": pid, "exports": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
