"""Small CC0 sample images bundled with the package (see README.md here)."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent
BBBC039 = SAMPLES_DIR / "bbbc039"


def sample_images() -> list[Path]:
    """The bundled sample images (BBBC039 validation nuclei, uint16 TIFF)."""
    return sorted((BBBC039 / "images").glob("*.tif"))
