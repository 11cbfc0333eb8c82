import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from reidbench.data.synthetic import SyntheticConfig, generate, identity_codes

SMALL = SyntheticConfig(train_ids=6, test_ids=4, cameras=3, per_camera=2, query_per_camera=1)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "COMPLETE":
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", SMALL, show_progress=False)
    b = generate(tmp_path / "b", SMALL, show_progress=False)
    assert _digest(a) == _digest(b)
    c = generate(tmp_path / "c", SyntheticConfig(**{**SMALL.__dict__, "seed": 1}), show_progress=False)
    assert _digest(a) != _digest(c)


def test_layout_is_rgbnt100(tmp_path):
    root = generate(tmp_path, SMALL, show_progress=False)
    train = sorted((root / "rgbir" / "bounding_box_train").glob("*.jpg"))
    gallery = sorted((root / "rgbir" / "bounding_box_test").glob("*.jpg"))
    query = sorted((root / "rgbir" / "query").glob("*.jpg"))
    assert (len(train), len(gallery), len(query)) == (6 * 3 * 2, 4 * 3 * 2, 4 * 3 * 1)
    assert train[0].name == "0001_c0001_000.jpg"
    assert {int(p.name[:4]) % 2 for p in train} == {1} and {int(p.name[:4]) % 2 for p in gallery} == {0}
    from PIL import Image

    assert Image.open(train[0]).size == (3 * SMALL.width, SMALL.height)
    assert sorted(p.name for p in (root / "text").glob("*.json")) == [
        f"{s}_{t}.json" for s in ("test", "train") for t in ("NI", "RGB", "TI")
    ]


def test_no_single_modality_separates_identities():
    codes = identity_codes(72, seed=0)
    assert len(set(codes)) == 72  # all modalities together do
    for m in range(3):
        counts = Counter(c[m] for c in codes)
        assert max(counts.values()) >= 3  # each modality alone confuses identities
    # and every pair of modalities still leaves some identities confused for the default size
    pair_collisions = [len(codes) - len({(c[i], c[j]) for c in codes}) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert any(n > 0 for n in pair_collisions)


def test_generation_is_reused(tmp_path):
    root = generate(tmp_path, SMALL, show_progress=False)
    stamp = (root / "COMPLETE").stat().st_mtime_ns
    assert generate(tmp_path, SMALL, show_progress=False) == root
    assert (root / "COMPLETE").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".synthetic-*"))


def test_modalities_carry_different_cues(tmp_path):
    from PIL import Image

    root = generate(tmp_path, SMALL, show_progress=False)
    strip = np.asarray(Image.open(next((root / "rgbir" / "bounding_box_train").glob("*.jpg"))), dtype=float)
    w = SMALL.width
    rgb, nir = strip[:, :w], strip[:, w : 2 * w]
    assert np.abs(nir[..., 0] - nir[..., 1]).mean() < 3  # NIR is grey
    assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 10  # RGB is coloured
