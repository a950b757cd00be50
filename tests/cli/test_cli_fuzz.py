"""Bad input on the command line, for predict, evaluate, measure, convert, train and report: damaged,
empty and NaN files, wrong sizes, malformed COCO / VOC / CVAT / YAML, outputs that cannot be
written, unicode names, empty folders. Every case ends with exit status 2 and one line on stderr
that names the file and the problem, never a traceback.

The cases run in-process through typer's CliRunner (the command group itself turns errors into
lines, so this is what users see); test_cli_errors.py runs the real entry point in subprocesses
and has the inputs that rightly end in a warning (a few NaN pixels, a damaged overlay)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
from PIL import Image

from cli_testdata import assert_one_line_error, run_cli, tiny_config, write_config

CPU = ("--device", "cpu")


class Inputs:
    """Bad (and good) input files of one case, made in its temporary folder from real images."""

    def __init__(self, tmp_path: Path, request, samples: Path):
        self.root = tmp_path
        self.request = request
        self.samples = samples
        (tmp_path / "in").mkdir(exist_ok=True)

    # ---- places -----------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / "in" / name

    def out(self, name: str = "out") -> Path:
        return self.root / name

    @property
    def read_only(self) -> Path:
        return self.request.getfixturevalue("read_only_folder")

    def a_file(self) -> Path:
        """A regular file, to name as an output folder or a folder in an output path."""
        f = self.path("results")
        f.write_text("my notes, not a folder\n")
        return f

    # ---- real data --------------------------------------------------------------------------
    @property
    def image(self) -> Path:
        return self.samples / "images" / "IXMtest_B12_s2.tif"

    @property
    def label(self) -> Path:
        return self.samples / "labels" / "IXMtest_B12_s2.png"

    def pixels(self) -> np.ndarray:
        return tifffile.imread(self.image)

    @property
    def predictions(self) -> Path:
        """A prediction folder of the shipped model (shared: do not change it)."""
        return self.request.getfixturevalue("prediction_folder")

    def damaged_predictions(self) -> Path:
        return Path(shutil.copytree(self.predictions, self.root / "pred"))

    def ground_truth(self) -> Path:
        """images/ + labels/ of the two predicted images."""
        gt = self.root / "gt"
        for sub in ("images", "labels"):
            (gt / sub).mkdir(parents=True)
        for p in sorted((self.samples / "images").glob("*.tif"))[:2]:
            shutil.copy(p, gt / "images" / p.name)
            shutil.copy(self.samples / "labels" / f"{p.stem}.png", gt / "labels" / f"{p.stem}.png")
        return gt

    def config(self, **train) -> Path:
        return write_config(self.path("tiny.yaml"),
                            tiny_config("instance", self.root, self.samples, validate=False, **train))

    # ---- damaged files ----------------------------------------------------------------------
    def zero_bytes(self, name: str) -> Path:
        p = self.path(name)
        p.write_bytes(b"")
        return p

    def truncated(self, source: Path, name: str, share: float = 0.3) -> Path:
        data = source.read_bytes()
        p = self.path(name)
        p.write_bytes(data[: int(len(data) * share)])
        return p

    def text(self, name: str, content: str) -> Path:
        p = self.path(name)
        p.write_text(content, encoding="utf-8")
        return p

    def tiff(self, name: str, array: np.ndarray) -> Path:
        p = self.path(name)
        tifffile.imwrite(p, array)
        return p

    def png(self, name: str, array: np.ndarray) -> Path:
        p = self.path(name)
        Image.fromarray(array).save(p)
        return p

    def coco(self, name: str, *, segmentation=None, **changes) -> Path:
        """A COCO file of the sample image (beside it) with one polygon, changed as asked."""
        shutil.copy(self.image, self.path(self.image.name))
        data = {"images": [{"id": 1, "file_name": self.image.name, "width": 696, "height": 520}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                 "segmentation": segmentation or [[10, 10, 40, 10, 40, 40, 10, 40]],
                                 "area": 900.0, "bbox": [10, 10, 30, 30]}],
                "categories": [{"id": 1, "name": "nucleus"}], **changes}
        return self.text(name, json.dumps(data))


@dataclass
class Case:
    id: str
    build: Callable[[Inputs], tuple[list, list[str]]]  # -> (arguments, what the error line names)


CASES: list[Case] = []


def case(id: str):
    def register(build):
        CASES.append(Case(id, build))
        return build

    return register


# ---- predict --------------------------------------------------------------------------------
@case("predict-zero-byte-tiff")
def _(d: Inputs):
    f = d.zero_bytes("blank.tif")
    return ["predict", f, "--out", d.out(), *CPU], ["blank.tif", "empty"]


@case("predict-truncated-tiff")
def _(d: Inputs):
    f = d.truncated(d.image, "cut.tif")
    return ["predict", f, "--out", d.out(), *CPU], ["cut.tif", "cannot read"]


@case("predict-text-named-tif")
def _(d: Inputs):
    f = d.text("notes.tif", "plate 3, well B12: nuclei\n")
    return ["predict", f, "--out", d.out(), *CPU], ["notes.tif", "not a TIFF"]


@case("predict-truncated-png")
def _(d: Inputs):
    f = d.truncated(d.label, "cut.png", 0.2)
    return ["predict", f, "--out", d.out(), *CPU], ["cut.png"]


@case("predict-all-nan-float-tiff")
def _(d: Inputs):
    f = d.tiff("all_nan.tif", np.full((128, 128), np.nan, np.float32))
    return ["predict", f, "--out", d.out(), *CPU], ["all_nan.tif", "no finite pixel"]


@case("predict-3-plane-z-stack-is-not-rgb")
def _(d: Inputs):
    f = d.path("stack.tif")  # three planes, no axes recorded: Z, T or channels?
    tifffile.imwrite(f, np.stack([d.pixels()[:128, :128]] * 3), photometric="minisblack")
    return ["predict", f, "--out", d.out(), *CPU], ["stack.tif", "--axes"]


@case("predict-image-too-small")
def _(d: Inputs):
    f = d.tiff("speck.tif", d.pixels()[:4, :4])
    return ["predict", f, "--out", d.out(), *CPU], ["speck.tif", "4x4"]


@case("predict-empty-folder")
def _(d: Inputs):
    folder = d.path("nothing_here")
    folder.mkdir()
    return ["predict", folder, "--out", d.out(), *CPU], ["nothing_here", "no images"]


@case("predict-missing-file")
def _(d: Inputs):
    return ["predict", d.path("gone.tif"), "--out", d.out(), *CPU], ["gone.tif", "no such file"]


@case("predict-pattern-matches-nothing")
def _(d: Inputs):
    return ["predict", str(d.path("*.tiff")), "--out", d.out(), *CPU], ["*.tiff", "matches no files"]


@case("predict-unicode-truncated-ядра")
def _(d: Inputs):
    f = d.truncated(d.image, "ядра.tif")
    return ["predict", f, "--out", d.out(), *CPU], ["ядра.tif"]


@case("predict-negative-pixel-size")
def _(d: Inputs):
    return ["predict", d.image, "--out", d.out(), "--pixel-size", "-0.65", *CPU], ["pixel size", "-0.65"]


@case("predict-read-only-output")
def _(d: Inputs):
    out = d.read_only / "predictions"
    return ["predict", d.image, "--out", out, *CPU], [str(out)]


@case("predict-output-is-a-file")
def _(d: Inputs):
    f = d.a_file()
    return ["predict", d.image, "--out", f, *CPU], [str(f), "not a folder"]


@case("predict-output-under-a-file")
def _(d: Inputs):
    out = d.a_file() / "run1"
    return ["predict", d.image, "--out", out, *CPU], [str(out), "Not a directory"]


@case("predict-damaged-model-file")
def _(d: Inputs):
    model = d.path("model.pt")
    model.write_bytes(b"PK\x03\x04 half a checkpoint")
    return ["predict", d.image, "--out", d.out(), "--model", model, *CPU], ["model.pt", "cannot read"]


# ---- evaluate -------------------------------------------------------------------------------
@case("evaluate-gt-malformed-coco-json")
def _(d: Inputs):
    gt = d.text("gt.json", '{"images": [{"id": 1, "file_name": ')
    return ["evaluate", "--pred", d.predictions, "--gt", gt], ["gt.json", "not valid JSON"]


@case("evaluate-gt-coco-nan-coordinate")
def _(d: Inputs):
    gt = d.coco("gt.json", segmentation=[[10, 10, float("nan"), 10, 40, 40, 10, 40]])
    return ["evaluate", "--pred", d.predictions, "--gt", gt], ["gt.json", "non-finite"]


@case("evaluate-gt-coco-without-images")
def _(d: Inputs):
    gt = d.text("gt.json", json.dumps({"annotations": [], "categories": []}))
    return ["evaluate", "--pred", d.predictions, "--gt", gt], ["gt.json", "images"]


@case("evaluate-gt-truncated-pascal-voc-xml")
def _(d: Inputs):
    gt = d.text("IXMtest_B12_s2.xml", "<annotation><filename>IXMtest_B12_s2.tif</filename><size><width>696"
                "</width><height>520</height></size><object><name>nucl")
    return ["evaluate", "--pred", d.predictions, "--gt", gt], ["IXMtest_B12_s2.xml", "not valid XML"]


@case("convert-pascal-voc-nan-box")
def _(d: Inputs):
    shutil.copy(d.image, d.path(d.image.name))
    src = d.text("IXMtest_B12_s2.xml", "<annotation><filename>IXMtest_B12_s2.tif</filename><size><width>696"
                 "</width><height>520</height></size><object><name>nucleus</name><bndbox><xmin>10</xmin>"
                 "<ymin>nan</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>")
    return ["convert", src, d.out("ds"), "--to", "labels"], ["IXMtest_B12_s2.xml", "non-finite"]


@case("evaluate-gt-malformed-cvat-xml")
def _(d: Inputs):
    gt = d.text("cvat.xml", "<annotations><image id='0' name='IXMtest_B12_s2.tif' width='696'")
    return ["evaluate", "--pred", d.predictions, "--gt", gt], ["cvat.xml", "not valid XML"]


@case("evaluate-gt-empty-folder")
def _(d: Inputs):
    gt = d.path("annotated")
    gt.mkdir()
    return ["evaluate", "--pred", d.predictions, "--gt", gt], ["annotated", "dataset layout"]


@case("evaluate-gt-label-of-wrong-size")
def _(d: Inputs):
    gt = d.ground_truth()
    label = next((gt / "labels").glob("*.png"))
    Image.fromarray(np.zeros((100, 100), np.uint16)).save(label)
    return ["evaluate", "--pred", d.predictions, "--gt", gt], [label.name, "(100, 100)"]


@case("evaluate-pred-folder-without-predictions-json")
def _(d: Inputs):
    folder = d.path("not_predicted")
    folder.mkdir()
    return ["evaluate", "--pred", folder, "--gt", d.ground_truth()], ["not_predicted", "predictions.json"]


@case("evaluate-pred-truncated-predictions-json")
def _(d: Inputs):
    pred = d.damaged_predictions()
    text = (pred / "predictions.json").read_text()
    (pred / "predictions.json").write_text(text[: len(text) // 2])
    return ["evaluate", "--pred", pred, "--gt", d.ground_truth()], ["predictions.json", "not valid JSON"]


@case("evaluate-pred-every-label-image-truncated")
def _(d: Inputs):
    pred = d.damaged_predictions()
    for p in pred.glob("*_labels.tif"):
        p.write_bytes(p.read_bytes()[:300])
    return ["evaluate", "--pred", pred, "--gt", d.ground_truth()], ["_labels.tif", "nothing was scored"]


@case("evaluate-json-in-read-only-folder")
def _(d: Inputs):
    out = d.read_only / "metrics.json"
    return ["evaluate", "--pred", d.predictions, "--gt", d.ground_truth(), "--json", out], [str(out)]


@case("evaluate-json-under-a-file")
def _(d: Inputs):
    out = d.a_file() / "metrics.json"
    return ["evaluate", "--pred", d.predictions, "--gt", d.ground_truth(), "--json", out], [str(out)]


# ---- measure --------------------------------------------------------------------------------
@case("measure-zero-byte-label-png")
def _(d: Inputs):
    f = d.zero_bytes("a_labels.png")
    return ["measure", f, "--out", d.out("m.csv")], ["a_labels.png", "cannot read"]


@case("measure-nan-float-labels")
def _(d: Inputs):
    f = d.tiff("a_labels.tif", np.full((32, 32), np.nan, np.float32))
    return ["measure", f, "--out", d.out("m.csv")], ["a_labels.tif", "non-integer"]


@case("measure-colour-label-image")
def _(d: Inputs):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[4:9, 4:9] = (255, 0, 0)
    f = d.png("a_labels.png", rgb)
    return ["measure", f, "--out", d.out("m.csv")], ["a_labels.png", "colour"]


@case("measure-intensity-image-of-wrong-size")
def _(d: Inputs):
    image = d.tiff("IXMtest_B12_s2.tif", d.pixels()[:100, :100])
    return (["measure", d.label, "--image", image, "--out", d.out("m.csv")],
            ["IXMtest_B12_s2.png", "100x100"])


@case("measure-table-in-read-only-folder")
def _(d: Inputs):
    out = d.read_only / "objects.csv"
    return ["measure", d.label, "--out", out], [str(out)]


@case("measure-table-under-a-file")
def _(d: Inputs):
    out = d.a_file() / "objects.csv"
    return ["measure", d.label, "--out", out], [str(out)]


@case("measure-table-of-unknown-type")
def _(d: Inputs):
    return ["measure", d.label, "--out", d.out("objects.xlsx")], ["objects.xlsx", ".csv or .parquet"]


@case("measure-empty-folder")
def _(d: Inputs):
    folder = d.path("no_labels")
    folder.mkdir()
    return ["measure", folder, "--out", d.out("m.csv")], ["no_labels", "no images"]


@case("measure-malformed-classes-json")
def _(d: Inputs):
    classes = d.text("classes.json", '{"names": ["nucleus"], "objects": ')
    return (["measure", d.label, "--classes", classes, "--out", d.out("m.csv")],
            ["classes.json", "not a classes file"])


@case("measure-groups-csv-without-group-column")
def _(d: Inputs):
    groups = d.text("groups.csv", "image,condition\nIXMtest_B12_s2,control\n")
    return (["measure", d.label, "--groups", groups, "--out", d.out("m.csv")],
            ["groups.csv", "'group'"])


@case("measure-unicode-label-cut-細胞")
def _(d: Inputs):
    f = d.truncated(d.label, "細胞_masks.png", 0.2)
    return ["measure", f, "--out", d.out("m.csv")], ["細胞_masks.png"]


# ---- convert --------------------------------------------------------------------------------
@case("convert-malformed-coco-json")
def _(d: Inputs):
    src = d.text("export.json", "[{]")
    return ["convert", src, d.out("ds"), "--to", "labels"], ["export.json", "not valid JSON"]


@case("convert-coco-nan-coordinate")
def _(d: Inputs):
    src = d.coco("export.json", segmentation=[[10, 10, 40, float("nan"), 40, 40]])
    return ["convert", src, d.out("ds"), "--to", "labels"], ["export.json", "non-finite"]


@case("convert-coco-polygon-far-outside-the-image")
def _(d: Inputs):
    src = d.coco("export.json", segmentation=[[0, 0, 1e12, 0, 1e12, 1e12]])  # never rasterised
    return ["convert", src, d.out("ds"), "--to", "labels"], ["export.json", "outside its image"]


@case("convert-coco-annotation-of-undeclared-image")
def _(d: Inputs):
    src = d.coco("export.json")
    data = json.loads(src.read_text())
    data["annotations"][0]["image_id"] = 7
    src.write_text(json.dumps(data))
    return ["convert", src, d.out("ds"), "--to", "labels"], ["export.json", "7"]


@case("convert-malformed-cvat-xml")
def _(d: Inputs):
    src = d.text("annotations.xml", "<annotations><image name=")
    return ["convert", src, d.out("ds"), "--to", "coco"], ["annotations.xml", "not valid XML"]


@case("convert-unknown-target-format")
def _(d: Inputs):
    return ["convert", d.samples, d.out("ds"), "--to", "pascal"], ["pascal"]


@case("convert-output-in-read-only-folder")
def _(d: Inputs):
    out = d.read_only / "dataset"
    return ["convert", d.samples, out, "--to", "coco"], [str(out)]


@case("convert-output-is-a-file")
def _(d: Inputs):
    f = d.a_file()
    return ["convert", d.samples, f, "--to", "coco"], [str(f)]


@case("convert-output-under-a-file")
def _(d: Inputs):
    out = d.a_file() / "dataset"
    return ["convert", d.samples, out, "--to", "labels"], [str(out), "Not a directory"]


@case("convert-labels-layout-malformed-classes-json")
def _(d: Inputs):
    ds = d.ground_truth()
    (ds / "labels" / "classes.json").write_text('{"names": ')
    return ["convert", ds, d.out("ds.json"), "--to", "coco"], ["classes.json", "not a classes file"]


# ---- train ----------------------------------------------------------------------------------
@case("train-malformed-yaml")
def _(d: Inputs):
    cfg = d.text("config.yaml", "task: instance\ndata: {train: [unclosed\n")
    return ["train", cfg, "--out", d.out("run")], ["config.yaml", "YAML"]


@case("train-zero-byte-yaml")
def _(d: Inputs):
    cfg = d.zero_bytes("config.yaml")
    return ["train", cfg, "--out", d.out("run")], ["config.yaml"]


@case("train-yaml-unknown-setting")
def _(d: Inputs):
    cfg = d.text("config.yaml", f"task: instance\ndata: {{train: {d.samples}}}\nlearning_rate: 0.1\n")
    return ["train", cfg, "--out", d.out("run")], ["config.yaml", "learning_rate"]


@case("train-yaml-is-a-list")
def _(d: Inputs):
    cfg = d.text("config.yaml", "- task: instance\n- data: here\n")
    return ["train", cfg, "--out", d.out("run")], ["config.yaml", "mapping"]


@case("train-config-is-binary")
def _(d: Inputs):
    cfg = d.path("config.yaml")
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    return ["train", cfg, "--out", d.out("run")], ["config.yaml", "not a text"]


@case("train-missing-config")
def _(d: Inputs):
    return ["train", d.path("nope.yaml"), "--out", d.out("run")], ["nope.yaml", "not found"]


@case("train-empty-data-folder")
def _(d: Inputs):
    empty = d.path("no_data")
    empty.mkdir()
    cfg = d.text("config.yaml", f"task: instance\nname: t\ndata: {{train: {empty}}}\n")
    return ["train", cfg, "--out", d.out("run")], ["no_data", "dataset layout"]


@case("train-output-is-a-file")
def _(d: Inputs):
    f = d.a_file()
    return ["train", d.config(), "--out", f], [str(f), "not a folder"]


@case("train-output-under-a-file")
def _(d: Inputs):
    out = d.a_file() / "run"
    return ["train", d.config(), "--out", out], [str(out), "Not a directory"]


@case("train-output-in-read-only-folder")
def _(d: Inputs):
    out = d.read_only / "run"
    return ["train", d.config(), "--out", out], [str(out)]


# ---- report ---------------------------------------------------------------------------------
@case("report-folder-without-predictions")
def _(d: Inputs):
    folder = d.path("somewhere")
    folder.mkdir()
    return ["report", folder, "--out", d.out("r.html")], ["somewhere", "predictions.json"]


@case("report-output-not-html")
def _(d: Inputs):
    return ["report", d.predictions, "--out", d.out("report.pdf")], ["report.pdf", "HTML"]


@case("report-output-in-read-only-folder")
def _(d: Inputs):
    out = d.read_only / "report.html"
    return ["report", d.predictions, "--out", out], [str(out)]


@case("report-output-under-a-file")
def _(d: Inputs):
    out = d.a_file() / "report.html"
    return ["report", d.predictions, "--out", out], [str(out)]


@case("report-truncated-label-image")
def _(d: Inputs):
    pred = d.damaged_predictions()
    label = sorted(pred.glob("*_labels.tif"))[0]
    label.write_bytes(label.read_bytes()[:200])
    return ["report", pred, "--out", d.out("r.html")], [label.name, "cannot read"]


@case("report-malformed-measurement-table")
def _(d: Inputs):
    table = d.path("objects.parquet")
    table.write_bytes(b"PAR1 not really")
    return ["report", d.predictions, "--table", table, "--out", d.out("r.html")], ["objects.parquet"]


@case("report-table-not-from-measure")
def _(d: Inputs):
    table = d.text("objects.csv", "well,count\nB12,120\n")
    return (["report", d.predictions, "--table", table, "--out", d.out("r.html")],
            ["objects.csv", "no column(s) image, label, class"])


@case("report-gt-malformed-coco")
def _(d: Inputs):
    gt = d.text("gt.json", "{")
    return ["report", d.predictions, "--gt", gt, "--out", d.out("r.html")], ["gt.json"]


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_line_naming_the_file(bad: Case, tmp_path, request, samples_dir):
    args, names = bad.build(Inputs(tmp_path, request, samples_dir))
    result = run_cli(*args)
    assert_one_line_error(result, *names)

