"""tools/get_photos.py offline: real .deb packages (built here with dpkg-deb, holding
small images at the real paths) -> the photos, resized as described, with licences."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")


def _tool():
    spec = importlib.util.spec_from_file_location("get_photos", ROOT / "tools" / "get_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _deb(folder: Path, package: str, files: dict, tmp: Path):
    tree = tmp / f"tree-{package}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: stand-in\n")
    for inside, (w, h) in files.items():
        path = tree / inside
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(inside))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    doc = tree / "usr/share/doc" / package
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(f"{package}: licence text\n")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(folder / f"{package}_1.0_all.deb")],
                   check=True, capture_output=True)


def test_photos_from_debs_resized_with_licences(tmp_path):
    tool = _tool()
    debs = tmp_path / "debs"
    debs.mkdir()
    sizes = {"opencv-doc": (60, 40), "lomiri-wallpapers-20.04": (2400, 1500), "gnome-backgrounds": (1300, 1100)}
    for package, photos in tool.PHOTOS.items():
        _deb(debs, package, {inside: sizes[package] for inside, _, _ in photos}, tmp_path)
    out = tmp_path / "photos"
    assert tool.main([str(out), "--debs", str(debs)]) == 0
    jpgs = sorted(p.name for p in out.glob("*.jpg"))
    assert len(jpgs) == 26 and "opencv_graf1.jpg" in jpgs and "gnome_wood-l.jpg" in jpgs
    with Image.open(out / "opencv_smarties.jpg") as im:   # a PNG in the package: full size, RGB JPEG
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (60, 40)
    with Image.open(out / "lomiri_Fossa_by_Jasper_Roks.jpg") as im:
        assert im.size == (1638, 1024)                     # shorter side 1024, aspect kept
    with Image.open(out / "gnome_wood-l.jpg") as im:
        assert min(im.size) == 1024
    assert sorted(p.name for p in (out / "LICENSES").iterdir()) == [
        "gnome-backgrounds.copyright", "lomiri-wallpapers-20.04.copyright", "opencv-doc.copyright"]
    assert "CC-BY-SA" in (out / "README.md").read_text()


def test_a_missing_package_is_one_line(tmp_path, capsys):
    (tmp_path / "debs").mkdir()
    assert _tool().main([str(tmp_path / "out"), "--debs", str(tmp_path / "debs")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no opencv-doc_*.deb" in err and "\n" not in err
