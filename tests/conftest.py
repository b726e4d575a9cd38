import numpy as np
import pytest

import chainrule as cr


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state."""
    cr.manual_seed(0)
    np.random.seed(0)
    yield
