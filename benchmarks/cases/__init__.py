"""The benchmark cases, by kind (the values of ``bench.py --only``).

A case module has:

* ``KIND``: its name in ``--only`` and in the JSON's ``results[].kind``;
* ``add_arguments(parser)``: its own flags (may add none);
* ``build(args) -> [case, ...]``: one dict per figure, with at least ``kind``,
  ``size``, ``dtype`` and ``batch``;
* ``run(args, case, peaks) -> dict``: the measurements of one case (exceptions
  are caught by ``bench.run_case``: one failing figure does not lose the others);
* ``table_rows(result) -> [(label, figures), ...]``: rows for the summary table
  (``figures`` has ``median_s``, ``min_s``, ``images_per_s``, ...);
* optionally ``print_details(result)``: anything the table does not show.

To add a kind, write the module and add it to :data:`REGISTRY`.
"""

from benchmarks.cases import infer, layers, shift_op, train_step

REGISTRY = {m.KIND: m for m in (infer, train_step, shift_op, layers)}
DEFAULT_KINDS = ("infer", "train", "shift")
