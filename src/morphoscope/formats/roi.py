"""ImageJ / Fiji ROI sets: ``NAME_rois.zip``, one ROI per object, written with roifile.

Open the image in Fiji, then the zip (drag it onto Fiji, or ROI Manager > More > Open): each
object is a ROI named ``<label>-<class>`` (the label zero-padded so that the ROI Manager sorts
them in label order; the label is the object's value in ``NAME_labels.tif``), in its class's
group (1..K) and colour, with the properties ``label``, ``class`` and ``score`` (Image > Overlay
> List Elements, or ``Roi.getProperty``). Stacks: each ROI sits on its plane (hyperstack
position z/t and stack position).

Outlines run along the object's pixel edges (:mod:`morphoscope.formats.outlines`), so ImageJ's
mask of a ROI is exactly the object's pixels and its Area is the pixel count. An object in one
piece without holes is a traced polygon ROI (what ImageJ's wand and Analyze Particles make), with
integer pixel-corner coordinates; an object with holes or in several pieces is a composite
(shape) ROI whose sub-paths are the outer boundaries and the holes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from morphoscope.formats.export_common import class_colour, exported_objects
from morphoscope.formats.outlines import mask_outline, polygons_of

SUFFIX = "_rois.zip"
_MOVETO, _LINETO, _CLOSE = 0, 1, 4  # java.awt.geom.PathIterator segment types


def imagej_roi(geometry, *, name: str, group: int = 0, colour=None, properties: dict | None = None,
               position: int = 0, z: int | None = None, t: int | None = None):
    """An ``roifile.ImagejRoi`` of a shapely Polygon or MultiPolygon in image coordinates."""
    from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi

    polygons = polygons_of(geometry)
    if not polygons:
        raise ValueError(f"ROI '{name}' has an empty outline")
    minx, miny, maxx, maxy = geometry.bounds
    simple = len(polygons) == 1 and not polygons[0].interiors
    if simple:
        xy = np.asarray(polygons[0].exterior.coords)[:-1]  # ImageJ polygons are closed implicitly
        roi = ImagejRoi.frompoints(np.round(xy).astype(np.int32), name=name)
        roi.roitype = ROI_TYPE.TRACED
    else:
        roi = ImagejRoi(roitype=ROI_TYPE.RECT, name=name)
        path = []
        for poly in polygons:
            for ring in [poly.exterior, *poly.interiors]:
                xy = np.asarray(ring.coords)[:-1]
                path += [_MOVETO, *xy[0]]
                for x, y in xy[1:]:
                    path += [_LINETO, x, y]
                path.append(_CLOSE)
        roi.multi_coordinates = np.asarray(path, np.float32)  # image coordinates (ShapeRoi)
        roi.shape_roi_size = len(path)
        roi.left, roi.top, roi.right, roi.bottom = int(minx), int(miny), int(maxx), int(maxy)
        roi.options = ROI_OPTIONS.OVERLAY_BACKGROUNDS | ROI_OPTIONS.OVERLAY_LABELS
    if group:
        roi.group = int(group)
    if colour is not None:
        r, g, b = (int(v) for v in colour)
        roi.stroke_color = bytes((255, r, g, b))  # ARGB
    if properties:
        roi.properties = {str(k): str(v) for k, v in properties.items()}
    if position:
        roi.position = int(position)
    if z is not None:
        roi.z_position = int(z) + 1
    if t is not None:
        roi.t_position = int(t) + 1
    return roi


def write_roi_zip(target, rois) -> None:
    """Write ROIs into a new zip (``target``: a path or a binary file), each as ``<name>.roi`` as the ROI Manager saves
    them (characters other than letters, digits, ``-``, ``_`` and ``.`` become ``_`` in the entry
    name; the ROI keeps its own name)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for roi in rois:
            entry = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in roi.name)
            zf.writestr(f"{entry}.roi", roi.tobytes())


def stack_position(index: dict, plane_axes: str, plane_shape) -> int:
    """ImageJ's 1-based stack position of plane ``index`` in a stack stored in ``plane_axes``
    order (the last axis varies fastest), 0 for a 2D image."""
    if not plane_axes:
        return 0
    return int(np.ravel_multi_index([int(index[a]) for a in plane_axes], tuple(plane_shape))) + 1


class ImageJRois:
    """The ``roi`` export: ``NAME_rois.zip`` per input."""

    name = "roi"
    needs_measurements = False

    def files(self, out: Path, name: str) -> list[Path]:
        return [Path(out) / f"{name}{SUFFIX}"]

    def run_files(self, out: Path) -> list[Path]:
        return []

    def write_image(self, ctx) -> None:
        from morphoscope.io.atomic import atomic_write

        item = ctx.item
        objects = list(exported_objects(ctx))
        width = len(str(max((o.label for o in objects), default=1)))
        rois = []
        for o in objects:
            geometry = mask_outline(o.crop, o.origin)
            rois.append(imagej_roi(
                geometry, name=f"{o.label:0{width}d}-{o.class_name}", group=o.class_id,
                colour=class_colour(o.class_id),
                properties={"label": o.label, "class": o.class_name, "score": f"{o.score:.6g}"},
                position=stack_position(o.plane, item.plane_axes, item.plane_shape),
                z=o.plane.get("Z"), t=o.plane.get("T")))
        with atomic_write(self.files(ctx.out, item.name)[0]) as fh:
            write_roi_zip(fh, rois)

    def finish(self, out: Path, records: list[dict], records_dir: Path) -> None:
        return None
