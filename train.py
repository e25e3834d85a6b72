"""Train Shift-Net: python train.py --config configs/places6.py [--config.key=value] [--workdir DIR]."""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", "configs/sample.py", "training config file",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints and logs go (default runs/<config.name>)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)   # Orbax logs every save at INFO
    from shiftnet_jax.train_loop import TrainingDiverged, train_and_evaluate

    config = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or f"runs/{config.name}"
    try:
        summary = train_and_evaluate(config, workdir)
    except (ValueError, FileNotFoundError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "step")
    print(f"done: step {summary['step']} in {workdir}: {shown}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
