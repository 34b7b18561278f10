import sys

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: one intra-op thread is much faster than two on a shared, loaded machine.

    Only where torch is already imported (test modules that use it import it at the top), so that the tests which
    never touch torch do not pay for importing it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
