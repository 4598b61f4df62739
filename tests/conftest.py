import numpy as np
import pytest
import torch
from reference import reference_arrays, seeded_params  # tests/ is on sys.path (pytest's rootdir conftest)


@pytest.fixture(scope="session", autouse=True)
def at_most_two_threads():
    """This suite's machines have 2 cores: never more intra-op threads than that; restored at the end."""
    n = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, n)))
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def one_thread():
    """One intra-op thread: on a busy 2-core box OpenMP stalls cost far more than a second thread saves."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def ref():
    return reference_arrays()


@pytest.fixture(scope="session")
def ref_generator():
    """The official-architecture 256 generator with the fixture's seeded weights (eval mode)."""
    from lia_live.model import Generator

    g = Generator(256)
    g.load_state_dict({**g.state_dict(), **seeded_params()}, strict=True)
    return g.eval()


@pytest.fixture(scope="session")
def tiny_config():
    from lia_live.model import GeneratorConfig

    return GeneratorConfig(size=64, style_dim=64, motion_dim=8, channel_div=8)


@pytest.fixture()
def tiny_generator(tiny_config):
    from lia_live.model import Generator

    torch.manual_seed(0)
    return Generator.from_config(tiny_config).eval()


@pytest.fixture(scope="session")
def astronaut():
    """NASA's public-domain astronaut portrait shipped with scikit-image (RGB uint8, 512×512)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
