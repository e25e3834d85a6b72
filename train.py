"""Train Shift-Net: python train.py --config configs/places6.py [--config.key=value ...] [--workdir DIR].

Any config field can be overridden, e.g. --config.optim.lr=1e-4 --config.data.dir=~/photos.
Running the same command again resumes from the workdir's latest checkpoint.
Exit code 0 when done, 1 when training cannot start or stops on an error, 2 for bad flags.
"""

import argparse
import sys


def parse(argv=None):
    """(args, [(config key, text), ...]); ``--config.KEY=VALUE`` and ``--config.KEY VALUE``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sample.py", help="config file (default configs/sample.py)")
    p.add_argument("--workdir", default=None, help="checkpoints and logs (default runs/<config.name>)")
    args, rest = p.parse_known_args(argv)
    overrides = []
    while rest:
        item = rest.pop(0)
        if not item.startswith("--config."):
            p.error(f"unrecognised argument {item!r} (config fields are set as --config.KEY=VALUE)")
        key, eq, value = item[len("--config."):].partition("=")
        if not eq:
            if not rest:
                p.error(f"{item} needs a value: {item}=VALUE")
            value = rest.pop(0)
        overrides.append((key, value))
    return args, overrides


def main(argv=None) -> int:
    args, overrides = parse(argv)
    from shiftnet_jax.train.loop import run_from_command_line

    return run_from_command_line(args.config, overrides, args.workdir)


if __name__ == "__main__":
    sys.exit(main())
