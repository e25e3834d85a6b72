"""The paper's figures as commands (experiments/paper.py): each runs at the tiny size and
writes its table and images into its own section of a results file, keeping the rest."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"fig3": 2, "fig7": 4, "fig8": 2, "fig9": 3, "fig10": 4, "fig11": 2}


def _paper():
    spec = importlib.util.spec_from_file_location("paper_cli", ROOT / "experiments" / "paper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("figure", sorted(ROWS))
def test_each_figure_writes_its_section_table_and_images(figure, tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nkept text\n")
    paper = _paper()
    args = [figure, "--tiny", "--photos", "builtin", "--results", str(results),
            "--figures", str(tmp_path / "fig"), "--workdir", str(tmp_path / "runs")]
    if figure == "fig8":   # the extremes of the default five (each is one more training)
        args += ["--lambdas", "0,1"]
    assert paper.main(args) == 0
    text = results.read_text()
    assert text.startswith("# Results\n\nkept text\n")
    section = text[text.index(f"<!-- paper:{figure} -->"):text.index(f"<!-- /paper:{figure} -->")]
    assert paper.TITLES[figure] in section and "Command: `python experiments/paper.py" in section
    numbers = re.findall(r"^\| [^|]+ \| (-?\d+\.\d+) \|", section, re.M)
    assert len(numbers) == ROWS[figure] and all(np.isfinite(float(v)) for v in numbers)
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", section)
    assert images and all((results.parent / i).is_file() for i in images)
    assert Image.open(results.parent / images[0]).size[0] > 32
    if figure == "fig9":
        assert re.search(r"ms / image at 64", section)
    # Written again, the section is replaced, not appended; the rest is kept.
    paper.write_section(results, figure, ["new body"])
    again = results.read_text()
    assert again.count(f"<!-- paper:{figure} -->") == 1 and "new body" in again
    assert again.startswith("# Results\n\nkept text\n") and "Command:" not in again
    capsys.readouterr()


def test_pca_colours_are_shared_between_features():
    paper = _paper()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4, 8))
    same, other = paper.pca_rgb(a, a.copy())
    np.testing.assert_array_equal(same, other)  # equal features, equal colours
    assert same.dtype == np.uint8 and same.shape == (4, 4, 3) and same.std() > 10


def test_fig8_refuses_a_weight_that_is_not_a_number(tmp_path, capsys):
    args = ["fig8", "--tiny", "--lambdas", "0,abc", "--results", str(tmp_path / "R.md")]
    assert _paper().main(args) == 1
    assert capsys.readouterr().err == "error: --lambdas: 'abc' is not a number >= 0\n"
    assert not (tmp_path / "R.md").exists()
