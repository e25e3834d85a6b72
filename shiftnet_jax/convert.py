"""Converting an official PyTorch generator checkpoint into a checkpoint of ours.

The mappings themselves are :mod:`shiftnet_jax.torchfile.state_dicts`; this
module reads the ``.pth`` safely, checks it and writes the folder atomically.

Command line: ``python -m shiftnet_jax.convert CKPT.pth OUT_DIR`` writes a
checkpoint that ``eval.py --ckpt OUT_DIR`` and ``inpaint.py`` load; ``--compat official``
records ``"compat": "official"`` in its ``config.json`` (docs/official-mode.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from shiftnet_jax import checkpoint
from shiftnet_jax.errors import UserError, escaped, first_line, one_line
from shiftnet_jax.nets.shift_level import SHIFT_DEFAULTS, SOFT, VARIANTS, ShiftOptions
from shiftnet_jax.torchfile.reader import file_name, read_torch_state_dict
from shiftnet_jax.torchfile.state_dicts import check_variables, from_torch_state_dict


def load_torch_checkpoint(path, norm: str | None = None, *, variant: str | None = None,
                          check: bool = True):
    """Read a reference ``*_net_G.pth`` (zip or legacy format) without torch.

    Nothing pickled is executed: see :mod:`shiftnet_jax.torchfile.reader`.
    Returns ``(model_kwargs, variables)`` as :func:`from_torch_state_dict`,
    checked against the model they build (:func:`check_variables`) unless
    ``check`` is false. Every problem raises ValueError (a
    :class:`~shiftnet_jax.torchfile.limits.CheckpointError` for the file itself)
    whose message is one line starting with the file name.
    """
    state = read_torch_state_dict(path)
    try:
        kwargs, variables = from_torch_state_dict(state, norm=norm, variant=variant)
        if check:
            check_variables(kwargs, variables)
        return kwargs, variables
    except ValueError as e:
        raise ValueError(one_line(f"{file_name(path)}: {e}")) from None


def _write_atomically(out_dir, kwargs, variables, source, config=None):
    """Export into a temporary folder beside ``out_dir``, then rename it: no partial output."""
    out = Path(out_dir)
    if out.exists():
        if (out / checkpoint.CONFIG_FILE).exists() or (out / checkpoint.CHECKPOINTS).exists():
            raise ValueError(f"{out}: already holds a checkpoint; choose a new directory")
        if not out.is_dir() or any(out.iterdir()):
            raise ValueError(f"{out}: exists and is not an empty directory")
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.absolute().parent))
    try:
        checkpoint.export_generator(tmp, kwargs, variables, config=config, source=source)
        os.replace(tmp, out)  # atomic; replaces only an empty directory
    except checkpoint.CheckpointWriteError as e:  # named by the output, not the temporary folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write {escaped(out)} ({e.detail}); nothing was left behind") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_official(kwargs):
    """``--compat official`` runs the model as the official code does: refuse what it does not."""
    if kwargs.get("flip_fill", "reference") != "reference":
        raise ValueError("--compat official: the official face shift fills the hole its own "
                         "way (--flip-fill reference), not with each position's choice")
    if kwargs["feature_hole"] != "nearest":
        raise ValueError("--compat official: the official code's feature hole is 'nearest', "
                         f"not --feature-hole {kwargs['feature_hole']}")
    if kwargs.get("patch_order", "reference") != "reference":
        raise ValueError("--compat official: the official code orders the soft shift's patches "
                         "its own way (--patch-order reference), not spatially")


def main(argv=None):
    """``python -m shiftnet_jax.convert CKPT.pth OUT_DIR``.

    Every problem with the file or OUT_DIR ends in one line on stderr,
    ``error: FILE: problem``, and exit code 1; nothing is written unless the
    whole file converts and matches the model.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", help="reference generator checkpoint (*_net_G.pth)")
    parser.add_argument("out_dir", help="directory to write (must not exist, or be empty)")
    parser.add_argument("--feature-hole", default="nearest", choices=("nearest", "conv"),
                        help="feature-level hole rule to store with the model")
    parser.add_argument("--norm", choices=("instance", "batch"), default=None,
                        help="the generator's norm (default: guessed, see from_torch_state_dict)")
    parser.add_argument("--variant", default=None, metavar="NAME",
                        help="the generator: shift, res, patch_soft, res_patch_soft, face "
                             "(or the official --which_model_netG name). Default: what the "
                             "keys show; patch_soft and res_patch_soft have the keys of shift "
                             "and res, so name them")
    defaults = SHIFT_DEFAULTS
    parser.add_argument("--shift-sz", type=int, default=defaults["shift_sz"],
                        help="the official --shift_sz the model was trained with (default %(default)s)")
    parser.add_argument("--mask-thred", type=int, default=defaults["mask_thred"],
                        help="the official --mask_thred (default %(default)s)")
    parser.add_argument("--fuse", type=int, choices=(0, 1), default=int(defaults["fuse"]),
                        help="the official --fuse of the patch soft variants (default %(default)s)")
    parser.add_argument("--patch-order", choices=("reference", "spatial"), default="reference",
                        help="soft shift patches as the official code orders them (default, to "
                             "reproduce its outputs) or as the method describes them")
    parser.add_argument("--flip-fill", choices=("reference", "chosen"), default="reference",
                        help="the face variant's hole as the official code fills it (default, to "
                             "reproduce its outputs: a broadcast sum) or with the feature each "
                             "position chose")
    parser.add_argument("--compat", choices=("", "official"), default="",
                        help="official: record compat 'official' in config.json, the official "
                             "code's way (at inference: the same forward for shift and res, the "
                             "official patch order for the soft variants and face shift)")
    args = parser.parse_args(argv)
    try:
        kwargs, variables = load_torch_checkpoint(args.checkpoint, norm=args.norm,
                                                  variant=args.variant)
        variant = kwargs.get("variant", "shift")
        kwargs["feature_hole"] = args.feature_hole
        if (args.shift_sz, args.mask_thred) != (defaults["shift_sz"], defaults["mask_thred"]):
            kwargs.update(shift_sz=args.shift_sz, mask_thred=args.mask_thred)
        if variant in SOFT:
            kwargs.update(fuse=bool(args.fuse), patch_order=args.patch_order)
        if variant == "face":
            kwargs.update(flip_fill=args.flip_fill)
        ShiftOptions(variant=variant, shift_sz=args.shift_sz, mask_thred=args.mask_thred,
                     patch_order=args.patch_order,
                     flip_fill=args.flip_fill).check_shift_options(kwargs["shift_layer"])
        if args.compat == "official":
            _check_official(kwargs)
        _write_atomically(args.out_dir, kwargs, variables, str(args.checkpoint),
                          {"compat": args.compat} if args.compat else None)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        print(one_line(f"error: {where}{detail}", 320), file=sys.stderr)
        return 1
    except Exception as e:  # a bug of ours; still one line, never a traceback
        print(one_line(f"error: {file_name(args.checkpoint)}: conversion failed "
                       f"({type(e).__name__}: {first_line(e)})", 320), file=sys.stderr)
        return 1
    same = {"shift": "patch_soft", "res": "res_patch_soft"}.get(variant)
    note = (f" (the keys of {VARIANTS[same]} are the same: convert with --variant {same} "
            "for one)") if args.variant is None and same else ""
    print(f"found {VARIANTS[variant]}{note}")
    print(f"wrote {args.out_dir}: {kwargs}" + (f", compat {args.compat!r}" if args.compat else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
