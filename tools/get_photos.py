"""Fetch the 26 real photographs the learning runs and RESULTS.md use, from Debian packages.

    python tools/get_photos.py [OUT]           # default OUT: data/photos (what configs/learning.py reads)
    python tools/get_photos.py OUT --debs DIR  # use .deb files already in DIR (offline)

Downloads (``apt-get download``, no root needed; ~140 MB in all) ``opencv-doc``
(OpenCV's sample images, BSD-3-Clause / Apache-2.0), ``lomiri-wallpapers-20.04``
and ``gnome-backgrounds`` (CC-BY-SA), extracts them with ``dpkg-deb`` and writes,
as ``../shared/data/photos/README.md`` describes:

* ``opencv_<name>.jpg`` (22): ``examples/data/<name>`` at full size, RGB JPEG;
* ``lomiri_<name>.jpg`` (3) and ``gnome_wood-l.jpg`` (1): shorter side 1024 px.

Each package's ``copyright`` file goes to ``OUT/LICENSES/`` and a README lists
the sources. Pixel values match the shared copies up to JPEG re-encoding.
Exit code 0 when all 26 photos were written, 1 otherwise (one line: why).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

OPENCV = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
          "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg",
          "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png",
          "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg")
LOMIRI = ("Fossa_by_Jasper_Roks.jpg", "Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg")
# package -> [(path inside the package, output name, shorter side or None for full size)]
PHOTOS = {
    "opencv-doc": [(f"usr/share/doc/opencv-doc/examples/data/{n}", f"opencv_{Path(n).stem}.jpg", None)
                   for n in OPENCV],
    "lomiri-wallpapers-20.04": [(f"usr/share/backgrounds/{n}", f"lomiri_{n}", 1024) for n in LOMIRI],
    "gnome-backgrounds": [("usr/share/backgrounds/gnome/wood-l.webp", "gnome_wood-l.jpg", 1024)],
}
LICENCES = {"opencv-doc": "BSD-3-Clause (OpenCV < 4.5) / Apache-2.0 and the images' own terms",
            "lomiri-wallpapers-20.04": "CC-BY-SA", "gnome-backgrounds": "CC-BY-SA"}
QUALITY = 95


def download(packages, folder: Path) -> None:
    """``apt-get download`` each package into ``folder`` (one line on failure)."""
    result = subprocess.run(["apt-get", "download", *packages], cwd=folder, capture_output=True, text=True)
    if result.returncode:
        why = (result.stderr.strip().splitlines() or ["apt-get failed"])[-1]
        raise RuntimeError(f"apt-get download {' '.join(packages)} failed: {why} "
                           "(run apt-get update first, or pass --debs DIR with the .deb files)")


def find_deb(folder: Path, package: str) -> Path:
    found = sorted(folder.glob(f"{package}_*.deb"))
    if not found:
        raise FileNotFoundError(f"{folder}: no {package}_*.deb")
    return found[-1]


def extract(deb: Path, into: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True, capture_output=True)


def convert(src: Path, dst: Path, shorter: int | None) -> None:
    """Any image -> RGB JPEG, resized (Lanczos) to ``shorter`` px on its shorter side if given."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        if shorter and min(im.size) > shorter:
            scale = shorter / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        im.save(dst, "JPEG", quality=QUALITY)


def get_photos(out: Path, debs: Path | None = None) -> list[Path]:
    """Write the photos, licences and README into ``out``; returns the photo paths."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "LICENSES").mkdir(exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if debs is None:
            debs = tmp / "debs"
            debs.mkdir()
            download(list(PHOTOS), debs)
        for package, photos in PHOTOS.items():
            root = tmp / package
            extract(find_deb(debs, package), root)
            for inside, name, shorter in photos:
                if not (root / inside).is_file():
                    raise FileNotFoundError(f"{package}: no /{inside} in the package")
                convert(root / inside, out / name, shorter)
                written.append(out / name)
            shutil.copy(root / "usr/share/doc" / package / "copyright", out / "LICENSES" / f"{package}.copyright")
    lines = ["# Real photographs for learning runs and tests", "",
             f"{len(written)} photographs, RGB JPEG, written by tools/get_photos.py from Debian packages "
             "(each keeps its licence; the packages' copyright files are in LICENSES/):", ""]
    lines += [f"- `{package}` ({LICENCES[package]}): " + ", ".join(f"`{n}`" for _, n, _ in photos)
              for package, photos in PHOTOS.items()]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", default="data/photos")
    p.add_argument("--debs", default=None, help="folder with the three .deb files (skips apt-get download)")
    args = p.parse_args(argv)
    try:
        written = get_photos(Path(args.out), Path(args.debs) if args.debs else None)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} photos, their licences and a README into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
