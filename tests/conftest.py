import os
import sys
import warnings

import pytest
import torch

from dispatchflops import mode

sys.path.insert(0, os.path.dirname(__file__))  # the reference module
warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def dispatch_paths(monkeypatch):
    """Each counter notes the per-op path its last block took: ``fc._mode_kind``, "c" or
    "python" (read from its mode as the mode closes, at the block's end)."""
    close = mode._Dispatch.close

    def noting(self):
        self.counter._mode_kind = "c" if "__torch_dispatch__" in self.__dict__ else "python"
        close(self)

    monkeypatch.setattr(mode._Dispatch, "close", noting)


@pytest.fixture
def fake_world():
    """``fake_world(n)``: a fake process group of n ranks, this process rank 0 (collectives
    return at once); destroyed after the test."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    def init(world):
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
        return world
    yield init
    if dist.is_initialized():
        dist.destroy_process_group()
