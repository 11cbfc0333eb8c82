"""Training on the synthetic data beats chance and the untrained model: single_modality, early_fusion."""

import pytest

from tests.presets import assert_method_learns, write_vocab

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it


@pytest.mark.parametrize("method,epochs", [("single_modality", 10), ("early_fusion", 6)])
def test_method_learns_on_synthetic(method, epochs, synthetic_dataset, tmp_path):
    # one modality sees a third of the images per step (and alone cannot separate every identity)
    assert_method_learns(method, synthetic_dataset, write_vocab(tmp_path / "vocab.txt"), epochs)
