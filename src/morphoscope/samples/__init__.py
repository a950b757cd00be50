"""Small CC0 sample images bundled with the package (see README.md here)."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent
BBBC039 = SAMPLES_DIR / "bbbc039"
#: one DSB2018 stage1_train H&E tissue image (val split) with its instance labels
DSB2018 = SAMPLES_DIR / "dsb2018"


def histology_sample() -> tuple[Path, Path]:
    """The bundled H&E-stained DSB2018 image and its label image (README.md here)."""
    image = next((DSB2018 / "images").glob("*.png"))
    return image, DSB2018 / "labels" / image.name


def sample_images() -> list[Path]:
    """The bundled sample images (BBBC039 validation nuclei, uint16 TIFF)."""
    return sorted((BBBC039 / "images").glob("*.tif"))
