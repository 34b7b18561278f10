import sys

import pytest


def pytest_addoption(parser):
    parser.addoption("--device", action="store", default="cpu",
                     help="device of the tests that take a `device` argument (kornia style): cpu (default), cuda, "
                          "cuda:1, ...; e.g. `pytest --device cuda tests/volume -k device` on a GPU machine")


def _explicitly_parametrized(metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    """Every test with a ``device`` argument runs on ``--device`` (test id ``[device=cuda]``, so ``-k device`` selects
    them); a test that parametrizes ``device`` itself keeps its own list."""
    if "device" in metafunc.fixturenames and not _explicitly_parametrized(metafunc, "device"):
        dev = metafunc.config.getoption("--device")
        metafunc.parametrize("device", [dev], ids=[f"device={dev}"])


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
