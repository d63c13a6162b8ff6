import torch

# the suite runs on 2 shared cores: one thread keeps it fast and deterministic
torch.set_num_threads(1)
