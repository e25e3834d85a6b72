"""Images and masks in, training batches out: decoding, hole shapes, mask specs,
sources (folders, TFDS, the sample, held-out regions), crops, the loader and its
worker processes."""
