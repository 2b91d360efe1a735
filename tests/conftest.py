import os

import pytest
import torch

# Tests share two cores with everything else on the machine: one thread each keeps them
# deterministic and stops PyTorch from oversubscribing.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
