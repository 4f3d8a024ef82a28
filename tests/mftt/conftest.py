"""mftt tests compare with closed forms: float64 by default, restored after each test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
