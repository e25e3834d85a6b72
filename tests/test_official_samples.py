"""The official samples as a yardstick, on stand-ins written in the official imgs/ layout
(real photos; the official images themselves are never committed)."""

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import tiny_checkpoint
from PIL import Image
from skimage import data as skdata

from shiftnet_jax import checkpoint
from shiftnet_jax.inference import official_samples

ROOT = Path(__file__).resolve().parents[1]


def _standins(root: Path):
    """imgs/<group>/<name>_real_A|_fake_B|_real_B.png at 64x64: grey-127 holes, a
    'released' output that is the truth blurred, one truth pixel grey by chance."""
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    holes = {}
    for group, names, centre in (("paris_center", ["003_im", "004_im"], True), ("face_random", ["0"], False)):
        (root / group).mkdir(parents=True)
        for k, name in enumerate(names):
            truth = cv2.resize(photos[(k + centre) % 3], (64, 64), interpolation=cv2.INTER_AREA)
            hole = np.zeros((64, 64), bool)
            if centre:
                hole[16:48, 16:48] = True
                truth[30, 30] = 127  # equal to the grey input there: still in the hole
            else:
                hole[5:20, 8:50] = hole[40:60, 30:40] = True
            given = np.where(hole[..., None], 127, truth).astype(np.uint8)
            released = cv2.GaussianBlur(truth, (7, 7), 2)
            for suffix, array in (("_real_A", given), ("_fake_B", released), ("_real_B", truth)):
                Image.fromarray(array).save(root / group / f"{name}{suffix}.png")
            holes[f"{group}/{name}"] = hole
    (root / "compare").mkdir()
    Image.fromarray(given).save(root / "compare" / "13_real_A.png")  # incomplete: ignored
    return holes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_groups_holes_scores_and_side_by_sides(tiny, tmp_path):
    holes = _standins(tmp_path / "imgs")
    groups = official_samples.find(tmp_path / "imgs")
    assert {g: [t["name"] for t in v] for g, v in groups.items()} == {
        "face_random": ["0"], "paris_center": ["003_im", "004_im"]}
    for group, triples in groups.items():
        for t in triples:
            given, truth = (np.asarray(Image.open(t[k]).convert("RGB")) for k in ("input", "truth"))
            np.testing.assert_array_equal(official_samples.hole_of(given, truth),
                                          holes[f"{group}/{t['name']}"])
    report = official_samples.score(checkpoint.load_generator(tiny), tmp_path / "imgs", tmp_path / "out",
                                    strategies=("crop", "resize"), baselines=("telea", "patchmatch"),
                                    progress=False)
    assert report["methods"] == ["released", "shiftnet_crop", "shiftnet_resize", "telea", "patchmatch"]
    assert report["counts"] == {"face_random": 1, "paris_center": 2}
    # The released output, composited, scored by hand: hole PSNR of the blurred truth.
    t = groups["paris_center"][0]
    truth = np.asarray(Image.open(t["truth"]).convert("RGB")).astype(np.float64) / 255
    blurred = np.asarray(Image.open(t["released"]).convert("RGB")).astype(np.float64) / 255
    hole = holes["paris_center/003_im"]
    expected = -10 * np.log10(np.mean((blurred[hole] - truth[hole]) ** 2))
    got = report["images"]["paris_center"][0]["scores"]["released"]["hole"]["psnr"]
    assert got == pytest.approx(expected, abs=1e-3)
    mean = report["groups"]["paris_center"]["released"]["hole_psnr"]
    assert mean == pytest.approx(np.mean([i["scores"]["released"]["hole"]["psnr"]
                                          for i in report["images"]["paris_center"]]))
    # An untrained model is far below the blurred truth; every score is finite.
    assert report["groups"]["paris_center"]["shiftnet_crop"]["hole_psnr"] < mean
    assert all(np.isfinite(v) for g in report["groups"].values() for m in g.values() for v in m.values())
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["groups"] == report["groups"]
    panel = np.asarray(Image.open(tmp_path / "out" / "paris_center_003_im.png"))
    assert panel.shape[1] == 7 * 64 + 6 * 2  # input, 5 methods, truth
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| paris_center (2), hole psnr |" in md and "released Shift-Net (published)" in md


def test_cli_prints_the_group_table_and_fails_in_one_line(tiny, tmp_path, capsys):
    _standins(tmp_path / "imgs")
    spec = importlib.util.spec_from_file_location("eval_cli", ROOT / "eval.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    code = cli.main(["--ckpt", str(tiny), "--official-samples", str(tmp_path / "imgs"), "--out",
                     str(tmp_path / "out"), "--baselines", "telea", "--strategies", "crop", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "| face_random (1), hole psnr |" in out and "working size 64" in out
    assert cli.main(["--official-samples", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such directory" in err and "\n" not in err
    assert cli.main(["--ckpt", str(tiny), "--official-samples", str(tmp_path / "imgs"),
                     "--strategies", "tile", "--out", str(tmp_path / "y")]) == 1
    assert "strategy must be one of" in capsys.readouterr().err
