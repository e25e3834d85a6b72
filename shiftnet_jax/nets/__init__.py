"""The networks: the generator and its shift layers, the discriminators, VGG16 (NHWC)."""
