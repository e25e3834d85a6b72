"""Training: losses, the jitted step, data parallelism, the loop and its reports."""
