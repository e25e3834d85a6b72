"""Print the trajectory parity table of docs/official-mode.md ("How close it is").

    python tools/trajectory_report.py [--float64]

For each setting of tests/fixtures/trajectory_*.npz (the official training loop, 10
steps): G's and D's ``max_rel`` / ``rel_change`` (``shiftnet_jax.official.
state_dict_errors``) of our float32 run after step 1 against the official float32 run,
and after steps 2, 5 and 10 against the exact trajectory (the official run in float64),
each beside the official code's own float32 distance to the same reference; with
``--float64``, our float64 run's largest error against the exact trajectory (losses of
every step; G and D at every snapshot). The comparisons are the tests' own
(``tools/trajectory.py``); no torch needed.
"""

import argparse

from trajectory import LOSSES, SETTINGS, errors, exact_errors, float64_loss_errors, snapshots


def pair(mine, official):
    return f"{mine:8.2g} / {official:<8.2g}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--float64", action="store_true", help="also run the float64 trajectories")
    args = p.parse_args()
    print("ours / official float32, max_rel (G, D) and rel_change (G, D); step 1 against the "
          "official float32 run, later steps against the exact (float64) trajectory")
    for setting in SETTINGS:
        g_err, d_err, g_spread, d_spread = errors(setting, 1)
        rows = [(1, {"g": g_err, "d": d_err}, {"g": g_spread, "d": d_spread})]
        rows += [(s, *exact_errors(setting, s)) for s in snapshots() if s > 1]
        for step, mine, own in rows:
            cells = [pair(mine[n][m], own[n][m]) for m in ("max_rel", "rel_change") for n in "gd"]
            print(f"  {setting:11s} step {step:2d}  " + "  ".join(cells))
    if not args.float64:
        return
    print("float64: ours against the official float64 run (largest relative error)")
    for setting in SETTINGS:
        loss = max(float(e.max()) for e in float64_loss_errors(setting).values())
        params = max(exact_errors(setting, s, "float64")[0][n]["max_rel"]
                     for s in snapshots() for n in "gd")
        print(f"  {setting:11s} losses ({', '.join(LOSSES)}; every step) {loss:.1e}  "
              f"G and D after steps {', '.join(map(str, snapshots()))} {params:.1e}")


if __name__ == "__main__":
    main()
