"""Reading PyTorch checkpoints without torch: a restricted pickle machine, the zip and
legacy archives, tensors, and every mapping between official state dicts and ours."""
