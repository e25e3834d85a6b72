"""Using a trained generator: the forward pass, metrics, evaluation, inpainting files."""
