"""Rebuild known_faces/ and test_images/ from public-domain photos shipped in packages.

Needs scikit-image and matplotlib (not project dependencies):
    python -m venv /tmp/samples && /tmp/samples/bin/pip install scikit-image matplotlib opencv-python
    /tmp/samples/bin/python scripts/make_samples.py
"""

from pathlib import Path

import cv2
import matplotlib.cbook
import matplotlib.image
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parent.parent
JPEG = [cv2.IMWRITE_JPEG_QUALITY, 90]


def hopper() -> np.ndarray:
    """Grace Hopper's official US Navy portrait (public domain), as BGR."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = np.asarray(matplotlib.image.imread(f))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def collins() -> np.ndarray:
    """Eileen Collins' NASA portrait (public domain), as BGR."""
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def coffee() -> np.ndarray:
    """A cup of coffee (CC0): a picture with no face, as BGR."""
    return cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)


def fit(image: np.ndarray, height: int) -> np.ndarray:
    scale = height / image.shape[0]
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def main() -> None:
    known, probes = ROOT / "known_faces", ROOT / "test_images"
    known.mkdir(exist_ok=True)
    probes.mkdir(exist_ok=True)
    # Gallery: a head-and-shoulders crop of the portrait.
    cv2.imwrite(str(known / "grace_hopper.jpg"), hopper()[40:420, 60:460], JPEG)
    # Known person, not the gallery image: the whole portrait mirrored, smaller, darker.
    probe = cv2.convertScaleAbs(fit(cv2.flip(hopper(), 1), 420), alpha=0.85, beta=-10)
    cv2.imwrite(str(probes / "grace_hopper.jpg"), probe, JPEG)
    # Group picture with small faces (~30 px): the known Hopper beside the unknown Collins.
    group = np.hstack([fit(hopper(), 110), fit(collins()[:330, 60:450], 110)])
    cv2.imwrite(str(probes / "group_small_faces.jpg"), group, JPEG)
    cv2.imwrite(str(probes / "no_face.jpg"), coffee(), JPEG)


if __name__ == "__main__":
    main()
