"""The benchmark suite of shiftnet_jax (see BENCHMARKS.md): ``python benchmarks/bench.py --help``."""
