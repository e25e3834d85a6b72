"""``shiftnet_jax.export``: ONNX (run by ONNX Runtime) and StableHLO (re-loaded by
jax.export.deserialize) against our JAX forward, on real photos with centre and
stroke holes, for the bundled demo model and tiny converted variants of every kind."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import hostile_checkpoints as hostile
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import key
from skimage import data as skdata

from shiftnet_jax import checkpoint
from shiftnet_jax.convert import main as convert_main
from shiftnet_jax.data.mask_shapes import center_mask, stroke_mask
from shiftnet_jax.errors import UserError
from shiftnet_jax.export import __main__ as cli
from shiftnet_jax.export import export_generator, graphs, stablehlo
from shiftnet_jax.inference.inpaint import inpaint_batch
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift import normalised
from shiftnet_jax.torchfile.state_dicts import to_torch_state_dict

onnx_export = pytest.importorskip("shiftnet_jax.export.onnx")
pytest.importorskip("jax2onnx", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")

# ../shared beside the checkout (the variable: for a checkout that lives elsewhere).
SHARED_PHOTOS = Path(os.environ.get("SHIFTNET_SHARED_PHOTOS", Path(__file__).resolve().parents[1].parent
                                    / "shared" / "data" / "photos"))
TOLERANCE = 1e-4
# Tiny official variants: (our model kwargs, convert flags). Face needs the official 8 levels.
VARIANTS = {
    "shift": (dict(), []),
    "res": (dict(variant="res"), []),
    "patch_soft": (dict(variant="patch_soft", shift_sz=3, fuse=True, patch_order="reference"),
                   ["--variant", "patch_soft", "--shift-sz", "3", "--fuse", "1"]),
    "res_patch_soft": (dict(variant="res_patch_soft", shift_sz=3, mask_thred=2,
                            patch_order="reference"),
                       ["--variant", "res_patch_soft", "--shift-sz", "3", "--mask-thred", "2"]),
    "face": (dict(variant="face", num_downs=8), ["--flip-fill", "chosen"]),   # sources: one per position
}
HARD = ("bundled", "shift", "res", "face")


def photos(source: str, size: int) -> np.ndarray:
    """Two real photographs, area-resized to (2, size, size, 3) uint8."""
    if source == "shared":
        if not SHARED_PHOTOS.is_dir():
            pytest.skip(f"no shared photos at {SHARED_PHOTOS} (../shared beside the checkout); "
                        "the scikit-image photos still ran")
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                  for p in sorted(SHARED_PHOTOS.glob("opencv_*.jpg"))[:2]]
    else:
        images = [skdata.astronaut(), skdata.chelsea()]
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def holes(size: int) -> np.ndarray:
    """A centre hole and a stroke hole: (2, size, size, 1) float32, 1 = missing."""
    return np.stack([center_mask(size), stroke_mask(np.random.default_rng(3), size)]
                    ).astype(np.float32)


def batch(source: str, size: int):
    """Every photo with every hole: image (4, S, S, 3) in [-1, 1], hole (4, S, S, 1)."""
    images = photos(source, size).astype(np.float32) / 127.5 - 1.0
    h = holes(size)
    return (np.concatenate([images, images]), np.concatenate([h[[0, 0]], h[[1, 1]]]))


def converted(name, root: Path):
    """A random-init tiny variant written as an official .pth and converted (torch-free)."""
    extra, flags = VARIANTS[name]
    kwargs = {**dict(ngf=4, num_downs=6, norm="instance", shift_layer=3, output_channels=3), **extra}
    size = 2 ** kwargs["num_downs"]
    model = ShiftNetGenerator(**kwargs)
    variables = jax.jit(model.init)(key(7), jnp.zeros((1, size, size, 3)),
                                    jnp.zeros((1, size, size, 1)))
    official = {k: v for k, v in kwargs.items() if k in ("ngf", "num_downs", "norm", "shift_layer",
                                                        "output_channels", "variant")}
    path = root / f"{name}.pth"
    hostile.write_state_dict(path, to_torch_state_dict(official, variables))
    assert convert_main([str(path), str(root / name), *flags]) == 0
    model, variables, _ = checkpoint.load_generator(root / name)
    assert model.variant == kwargs.get("variant", "shift")
    return model, variables, size


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (model, variables, size, jitted JAX reference, ONNX session, StableHLO
    Exported), built once (one XLA compilation of each per model)."""
    root = tmp_path_factory.mktemp("export")
    cache = {}

    def get(name):
        if name not in cache:
            if name == "bundled":
                model, variables, config = checkpoint.load_generator(checkpoint.BUNDLED_MODEL)
                size = config["data"]["crop_size"]
            else:
                model, variables, size = converted(name, root)
            sources = name in HARD
            onnx_path = export_generator(model, variables, "onnx", root / f"{name}.onnx",
                                         size=size, sources=sources)
            jax_path = export_generator(model, variables, "stablehlo", root / f"{name}.jax",
                                        size=size, sources=sources)
            reference = jax.jit(graphs.network_fn(model, variables, sources=sources))
            cache[name] = (model, variables, size, reference, onnx_export.session(onnx_path),
                           stablehlo.load(jax_path), jax_path)
        return cache[name]

    return get


def rel(a, b) -> float:
    """Largest difference relative to the largest reference value."""
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def assert_same_sources_except_ties(model, variables, image, hole, expected, got):
    """Equal shift sources, or else an exact tie: both sources score the same cosine."""
    expected, got = np.asarray(expected), np.asarray(got)
    assert expected.shape == got.shape and (expected >= 0).any()
    differ = np.argwhere(expected != got)
    if len(differ) == 0:
        return
    _, features = model.apply(variables, image, hole, return_features=True)
    queries, keys, _ = graphs.shift_inputs(model, variables, image, hole, features)
    b, h, w, c = features.decoded.shape
    q = np.asarray(queries).reshape(b, -1, c)
    k = np.asarray(normalised(keys.reshape(b, -1, c)))
    for n, y, x in differ:
        scores = k[n] @ q[n, y * w + x]
        assert got[n, y, x] >= 0, f"position ({y}, {x}) of image {n} lost its source"
        assert abs(scores[expected[n, y, x]] - scores[got[n, y, x]]) <= 1e-6 * np.abs(scores).max(), \
            f"image {n} position ({y}, {x}): sources {expected[n, y, x]} vs {got[n, y, x]} do not tie"


@pytest.mark.parametrize("source", ["skimage", "shared"])
@pytest.mark.parametrize("name", ["bundled", *VARIANTS])
def test_onnx_and_stablehlo_equal_the_jax_forward(exported, name, source):
    model, variables, size, reference, session, artifact, _ = exported(name)
    image, hole = batch(source, size)
    reference = reference(image, hole)
    onnx_out = session.run(None, {"image": image, "hole": hole})
    hlo_out = artifact.call(image, hole)
    for got in (onnx_out, hlo_out if name in HARD else [hlo_out]):
        if name in HARD:
            assert rel(got[0], reference[0]) <= TOLERANCE
            assert_same_sources_except_ties(model, variables, image, hole, reference[1], got[1])
        else:
            assert rel(got[0], reference) <= TOLERANCE


def test_onnx_refuses_the_official_face_shift_in_one_line(tmp_path):
    """convert's default for face checkpoints (flip_fill reference) has no ONNX graph yet
    (jax2onnx fails on it); StableHLO takes it."""
    model = ShiftNetGenerator(ngf=4, num_downs=8, variant="face", flip_fill="reference")
    with pytest.raises(UserError, match="does not export to ONNX yet; use --format stablehlo") as e:
        export_generator(model, {}, "onnx", tmp_path / "face.onnx", size=256)
    assert "\n" not in str(e.value) and not (tmp_path / "face.onnx").exists()


def test_the_batch_axis_is_dynamic(exported):
    model, variables, size, _, session, artifact, _ = exported("bundled")
    image, hole = batch("skimage", size)
    four = session.run(["output"], {"image": image, "hole": hole})[0]
    one = session.run(["output"], {"image": image[2:3], "hole": hole[2:3]})[0]
    np.testing.assert_allclose(one[0], four[2], atol=1e-6)
    assert artifact.call(image[:1], hole[:1])[0].shape == (1, size, size, 3)
    assert session.get_inputs()[0].shape[0] == "N" and artifact.platforms == ("cpu", "cuda")


def test_pipeline_is_inpaint_image_at_the_working_size(tmp_path):
    model, variables, config = checkpoint.load_generator(checkpoint.BUNDLED_MODEL)
    size = config["data"]["crop_size"]
    images = np.concatenate([photos("skimage", size)] * 2)
    masks = (np.repeat(holes(size), 2, axis=0) > 0).astype(np.uint8) * 255
    # inpaint.py's own path (one jitted batch of 4), as the studio's server runs it.
    expected = np.stack(inpaint_batch(model, variables, list(images), list(masks[..., 0]),
                                      size=size, batch_size=4))
    onnx_path = export_generator(model, variables, "onnx", tmp_path / "p.onnx", size=size,
                                 pipeline=True)
    hlo_path = export_generator(model, variables, "stablehlo", tmp_path / "p.jax", size=size,
                                pipeline=True)
    session = onnx_export.session(onnx_path)
    assert [i.type for i in session.get_inputs()] == ["tensor(uint8)"] * 2
    for got in (session.run(None, {"image": images, "mask": masks})[0],
                np.asarray(stablehlo.load(hlo_path).call(images, masks))):
        assert got.dtype == np.uint8 and got.shape == images.shape
        known = masks[..., 0] == 0
        np.testing.assert_array_equal(got[known], images[known])
        assert np.abs(got.astype(int) - expected).max() <= 1, "more than 1/255 in the hole"
        assert (got[~known] != images[~known]).any()


def test_stablehlo_runs_in_a_program_without_model_code(exported, tmp_path):
    _, _, size, *_, path = exported("bundled")
    s, q = size, size // 8          # the shift runs at 1/8 of the image size
    script = (
        "import sys, numpy as np, jax\n"
        f"e = jax.export.deserialize(bytearray(open({str(path)!r}, 'rb').read()))\n"
        f"x = np.zeros((3, {s}, {s}, 3), np.float32); h = np.zeros((3, {s}, {s}, 1), np.float32)\n"
        f"h[:, {s // 4}:{3 * s // 4}, {s // 4}:{3 * s // 4}] = 1\n"
        "out, source = (np.asarray(a) for a in e.call(x, h))\n"
        f"assert out.shape == (3, {s}, {s}, 3) and np.isfinite(out).all()\n"
        f"assert source.shape == (3, {q}, {q}) and (source[:, {q // 4}:{3 * q // 4}, {q // 4}:{3 * q // 4}] >= 0).all()\n"
        "assert not any(m.startswith('shiftnet_jax') for m in sys.modules)\n"
        "print(','.join(e.platforms))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "cpu,cuda"


def test_every_variant_without_a_hard_shift_exports_and_refuses_sources(tmp_path):
    model = ShiftNetGenerator(ngf=4, num_downs=5, use_shift=False)
    image, hole = batch("skimage", 32)
    variables = jax.jit(model.init)(key(1), image[:1], hole[:1])
    path = export_generator(model, variables, "onnx", tmp_path / "unet.onnx", size=32)
    got = onnx_export.session(path).run(None, {"image": image, "hole": hole})[0]
    assert rel(got, jax.jit(model.apply)(variables, image, hole)) <= TOLERANCE
    with pytest.raises(ValueError, match="no hard shift"):
        export_generator(model, variables, "onnx", tmp_path / "x.onnx", size=32, sources=True)


def test_cli_writes_the_file_or_refuses_in_one_line(tmp_path, capsys):
    assert cli.main(["--format", "stablehlo", "--out", str(tmp_path / "d.jax")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "d.jax").stat().st_size > 1e6
    for argv, fragment in [
            (["--format", "litert", "--out", str(tmp_path / "d.tflite")], "without TensorFlow"),
            (["--format", "onnx", "--size", "100", "--out", str(tmp_path / "a.onnx")],
             "multiple of 2**num_downs = 128"),
            (["--format", "onnx", "--ckpt", str(tmp_path), "--out", str(tmp_path / "b.onnx")],
             "not a checkpoint directory"),
            (["--format", "onnx", "--pipeline", "--sources", "--out", str(tmp_path / "c.onnx")],
             "drop --sources")]:
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not list(tmp_path.glob("*.onnx")) and not (tmp_path / "d.tflite").exists()
    result = subprocess.run([sys.executable, "-m", "shiftnet_jax.export", "--format", "litert",
                             "--out", str(tmp_path / "e.tflite")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
