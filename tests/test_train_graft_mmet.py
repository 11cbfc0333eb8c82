"""Training on the synthetic data beats chance and the untrained model: graft, mmet."""

import pytest

from tests.presets import assert_method_learns, write_vocab

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it


@pytest.mark.parametrize("method", ["graft", "mmet"])
def test_method_learns_on_synthetic(method, synthetic_dataset, tmp_path):
    assert_method_learns(method, synthetic_dataset, write_vocab(tmp_path / "vocab.txt"))
