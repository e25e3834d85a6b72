"""Print the default generator's parity with the official one (unet_shift_triple).

    python tools/parity_default.py

On the reference fixtures of tests/test_parity.py: the in-repo 64x64 one
(tests/fixtures) and the larger 256x256 one in shared/fixtures/reference beside
the checkout, where that folder exists. For each hole (centre, irregular): the
relative L2 error of the output, of all parameter gradients of sum(output * R)
together, and the worst single gradient tensor against
max(|ref|, 1e-2 * largest |ref|) (the near-zero rule of tools/parity_report.py,
which prints the same numbers for the other official generators). No torch needed.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# tools/parity.py (this script's folder is on sys.path when it runs)
from parity import gradient_errors, nhwc, rel

from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.torchfile.state_dicts import from_torch_state_dict

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_SETS = {"in-repo": ROOT / "tests" / "fixtures",
                "shared": ROOT.parent / "shared" / "fixtures" / "reference"}


def errors(directory: Path, name: str):
    """(output error, all-gradient error, worst tensor's error, its path) for one fixture."""
    z = np.load(directory / f"shiftnet_ref_{name}.npz")
    image, hole = nhwc(z["input_gt"]), nhwc(z["mask"]).astype(np.float32)
    weights = nhwc(z["loss_weights"])
    kwargs, variables = from_torch_state_dict(
        {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")})
    _, expected = from_torch_state_dict(
        {k[len("grad/"):]: z[k] for k in z.files if k.startswith("grad/")})
    model = ShiftNetGenerator(**kwargs)
    output = jax.jit(model.apply)(variables, image, hole)
    grads = jax.jit(jax.grad(lambda v: jnp.sum(model.apply(v, image, hole) * weights)))(variables)
    return (rel(output, nhwc(z["output"])), *gradient_errors(grads, expected))


def main():
    print("default generator, unet_shift_triple (output; all gradients; worst gradient tensor)")
    for where, directory in FIXTURE_SETS.items():
        if not directory.is_dir():
            print(f"  {where}: {directory} not found, skipped")
            continue
        for name in ("center", "irregular"):
            out, total, worst, path = errors(directory, name)
            print(f"  {where + ' ' + name:18s} output {out:.1e}  gradients {total:.1e}  "
                  f"worst {worst:.1e} {path}")


if __name__ == "__main__":
    main()
