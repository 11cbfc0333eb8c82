"""A procedurally generated multimodal ReID dataset in which identity needs fusion.

Each identity has three codes, each visible in one modality only:

* RGB: the colours of the object's upper and lower halves (4 x 4 palette pairs);
* NIR: a stripe texture (4 orientations x 2 frequencies);
* TIR: the layout of two heat spots (2 of 6 grid cells).

Codes are drawn so that every code is shared by several identities: no single modality separates
all identities, only their combination does. Cameras add nuisance (shift, scale, flip, illumination,
sensor noise, partial occlusion) and degrade one modality: camera 4 films at night (dark, noisy RGB),
camera 3 has a weak thermal contrast. Each sample carries a caption per modality built from a
random subset of the attributes that modality shows.

A :class:`Domain` says how the identities are filmed. ``domain="shift"`` (the ``synthetic_shift``
dataset) is a second domain from the same generator: other cameras (numbers 5-8, other scales and
offsets, night at camera 5, weak thermal contrast at camera 8), another palette for the same colour
names, dimmer and warmer illumination, weaker heat spots and stripes, and identities whose codes differ
from every identity of the default dataset: a model trained on one is tested on the other across a
domain gap (``reidbench run -d synthetic --test-on synthetic_shift``).

The generator writes any of the official layouts (``layout``), so each real loader is tested on files laid
out exactly like the real download:

* ``rgbnt100`` (default): ``rgbir/{bounding_box_train,bounding_box_test,query}/VVVV_cCCCC_NNN.jpg``, each file
  a horizontal RGB|NIR|TIR strip;
* ``rgbn300``: the same with RGB|NIR strips;
* ``rgbnt201``: ``{train_171,test}/{RGB,NI,TI}/PPPPPP_camC_T_NN.jpg`` (the test set is query and gallery);
* ``msvr310``: ``{bounding_box_train,bounding_box_test,query3}/VVVV/{vis,ni,th}/VVVV_sSSS_vC_NNN.jpg``; query3
  repeats the gallery images of the test identities seen in two scenes, as in the real set;
* ``market1501_mm``: ``{train,query,gallery}/{RGB,NI,TI}/PPPP_cCs1_FFFFFF_NN.jpg`` plus one ``-1`` junk image;

plus IDEA-style caption JSON files (``text/{train,test}_{RGB,NI,TI}.json``) and a WordPiece ``vocab.txt`` for
them (what the synthetic protocol's MMET tokenizer reads). :func:`write_data_root` puts the
result under the official folder name (``RGBNT201``, ...) of a data root.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reidbench.util.progress import progress_bar

PALETTE = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.15, 0.25, 0.85),
    "yellow": (0.9, 0.85, 0.1),
}
STRIPES = [(o, f) for o in ("horizontal", "vertical", "rising", "falling") for f in (2, 4)]
SPOT_CELLS = [(r, c) for r in range(2) for c in range(3)]
SPOT_LAYOUTS = list(itertools.combinations(range(len(SPOT_CELLS)), 2))
CELL_NAMES = ["upper left", "upper middle", "upper right", "lower left", "lower middle", "lower right"]
MODALITY_TAGS = ("RGB", "NI", "TI")


LAYOUTS = {  # layout -> (official folder name, modality tags written, camera range as written in names)
    "rgbnt100": ("RGBNT100", MODALITY_TAGS, (1, 8)),
    "rgbn300": ("RGBN300", MODALITY_TAGS[:2], (1, 8)),
    "rgbnt201": ("RGBNT201", MODALITY_TAGS, (1, 4)),
    "msvr310": ("MSVR310", MODALITY_TAGS, (1, 8)),  # written as views v0..v7
    "market1501_mm": ("Market1501-MM", MODALITY_TAGS, (1, 6)),
}


@dataclass(frozen=True)
class Domain:
    """How a domain films its identities: cameras, palette, lighting, thermal and stripe contrast."""

    palette: tuple[tuple[float, float, float], ...] = tuple(PALETTE.values())  # colours of PALETTE's names
    first_camera: int = 1  # camera number (in file names) of the domain's first camera
    scale: tuple[float, float] = (0.62, 0.06)  # object scale: base + step x camera index
    offset: tuple[float, float] = (2.0, 0.04)  # horizontal offset: (camera index - centre) x step
    illumination: tuple[float, float] = (0.75, 1.15)
    cast: tuple[float, float, float] | None = None  # colour cast of the illumination
    night_camera: int = 4  # camera index (1-based within the domain) filming at night
    weak_thermal_camera: int = 3  # camera index with a weak thermal contrast
    spot_heat: float = 0.7
    stripe_contrast: float = 0.4
    distinct_from_base: bool = False  # identity codes differ from every code of the default dataset


DOMAINS = {
    "base": Domain(),
    "shift": Domain(
        palette=((0.9, 0.45, 0.1), (0.1, 0.55, 0.55), (0.45, 0.2, 0.75), (0.7, 0.65, 0.4)),
        first_camera=5,
        scale=(0.5, 0.08),
        offset=(2.5, -0.05),
        illumination=(0.5, 0.9),
        cast=(1.1, 0.95, 0.75),
        night_camera=1,
        weak_thermal_camera=4,
        spot_heat=0.45,
        stripe_contrast=0.25,
        distinct_from_base=True,
    ),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and layout of the generated dataset; the defaults make the demo dataset."""

    train_ids: int = 48
    test_ids: int = 24
    cameras: int = 4
    per_camera: int = 4  # images per identity and camera (train and gallery)
    query_per_camera: int = 1  # extra test images per identity and camera (separate-query layouts)
    height: int = 32
    width: int = 64  # width of one modality tile (a strip is 3x wider)
    seed: int = 0
    layout: str = "rgbnt100"
    domain: str = "base"  # a key of DOMAINS

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; layouts: {', '.join(LAYOUTS)}")
        if self.domain not in DOMAINS:
            raise ValueError(f"unknown domain {self.domain!r}; domains: {', '.join(DOMAINS)}")
        low, high = LAYOUTS[self.layout][2]
        first = DOMAINS[self.domain].first_camera
        if first + self.cameras - 1 > high:
            raise ValueError(f"layout {self.layout!r} has cameras {low}..{high}; asked for {first}..")

    @property
    def style(self) -> Domain:
        return DOMAINS[self.domain]

    def key(self) -> str:
        """Folder name that changes whenever the config does (the base domain is not named, so the
        default dataset keeps its folder)."""
        values = asdict(self)
        if values["domain"] == "base":
            del values["domain"]
        return "synthetic-v2-" + "-".join(str(v) for v in values.values())


@dataclass(frozen=True)
class Item:
    """One sample to write: split (train / gallery / query), labels, and the identity's codes."""

    split: str
    pid: int
    cam: int  # 1-based
    n: int
    scene: int
    code: tuple[int, int, int]


def scenes_of(index: int) -> int:
    """Scenes an identity is filmed in: even-numbered identities two, odd ones one."""
    return 2 if index % 2 == 0 else 1


def plan(cfg: SyntheticConfig) -> list[Item]:
    """Every sample of ``cfg`` in writing order (identity, camera, image); vehicle-style ids: train odd,
    test even."""
    exclude: set[tuple[int, int, int]] = set()
    if cfg.style.distinct_from_base:
        base = SyntheticConfig()
        exclude = set(identity_codes(base.train_ids + base.test_ids, base.seed))
    codes = identity_codes(cfg.train_ids + cfg.test_ids, cfg.seed, exclude)
    items = []
    first = cfg.style.first_camera
    for i, code in enumerate(codes):
        train = i < cfg.train_ids
        pid = 2 * i + 1 if train else 2 * (i - cfg.train_ids) + 2
        for cam in range(first, first + cfg.cameras):
            for n in range(cfg.per_camera):
                scene = 2 * i + n % scenes_of(i)
                items.append(Item("train" if train else "gallery", pid, cam, n, scene, code))
            if not train and cfg.layout not in ("rgbnt201", "msvr310"):
                items += [
                    Item("query", pid, cam, cfg.per_camera + n, 2 * i, code)
                    for n in range(cfg.query_per_camera)
                ]
    return items


def expected_counts(cfg: SyntheticConfig) -> dict:
    """Samples and identities per split of ``cfg`` (for the loaders' count check)."""
    from reidbench.data.checks import Expected

    items = plan(cfg)
    out = {}
    for split in ("train", "gallery", "query"):
        chosen = [it for it in items if it.split == split]
        if split == "query" and cfg.layout == "rgbnt201":
            chosen = [it for it in items if it.split == "gallery"]
        if split == "query" and cfg.layout == "msvr310":
            chosen = [it for it in items if it.split == "gallery" and scenes_of(_index(it, cfg)) > 1]
        out[split] = Expected(len(chosen), len({it.pid for it in chosen}))
    return out


def _index(item: Item, cfg: SyntheticConfig) -> int:
    """Identity index (0-based over train then test) of ``item``."""
    return (item.pid - 1) // 2 if item.pid % 2 else cfg.train_ids + item.pid // 2 - 1


def identity_codes(
    num_ids: int, seed: int, exclude: set[tuple[int, int, int]] = frozenset()
) -> list[tuple[int, int, int]]:
    """Distinct (rgb, nir, tir) code triples, none in ``exclude``; each single code is shared by several
    identities."""
    rgb_codes = len(PALETTE) ** 2
    combos = len(STRIPES) * len(SPOT_LAYOUTS) * rgb_codes
    if num_ids > combos - len(exclude):
        raise ValueError(f"at most {combos - len(exclude)} synthetic identities")
    rng = np.random.default_rng(seed)

    def code(i: int) -> tuple[int, int, int]:
        return int(i % rgb_codes), int(i // rgb_codes % len(STRIPES)), int(i // rgb_codes // len(STRIPES))

    if not exclude:
        return [code(i) for i in rng.choice(combos, size=num_ids, replace=False)]
    allowed = [i for i in range(combos) if code(i) not in exclude]
    return [code(allowed[i]) for i in rng.choice(len(allowed), size=num_ids, replace=False)]


def render_sample(
    code: tuple[int, int, int],
    cam: int,
    rng: np.random.Generator,
    h: int,
    w: int,
    style: Domain = DOMAINS["base"],
) -> np.ndarray:
    """One sample as an ``(3 modalities, h, w, 3)`` float array in [0, 1]; ``cam``: the camera's 1-based
    index within the domain ``style``."""
    rgb_code, nir_code, tir_code = code
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Object box: camera-dependent scale and offset plus per-image jitter.
    scale = (style.scale[0] + style.scale[1] * cam) * rng.uniform(0.9, 1.1)
    bh, bw = h * min(scale * 1.2, 0.95), w * min(scale, 0.95)
    cy = h / 2 + rng.uniform(-0.08, 0.08) * h
    cx = w / 2 + (cam - style.offset[0]) * style.offset[1] * w + rng.uniform(-0.08, 0.08) * w
    v = (yy - (cy - bh / 2)) / bh  # 0..1 inside the box
    u = (xx - (cx - bw / 2)) / bw
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)

    colours = style.palette
    top, bottom = colours[rgb_code // len(PALETTE)], colours[rgb_code % len(PALETTE)]
    background = rng.uniform(0.3, 0.6, size=3)
    rgb = np.broadcast_to(background, (h, w, 3)).copy()
    rgb[inside & (v < 0.5)] = top
    rgb[inside & (v >= 0.5)] = bottom
    rgb *= rng.uniform(*style.illumination)  # illumination
    if style.cast is not None:
        rgb *= np.asarray(style.cast)
    if cam == style.night_camera:  # night: dark, noisy RGB
        rgb = rgb * 0.12 + rng.normal(0, 0.06, rgb.shape)

    orientation, freq = STRIPES[nir_code]
    phase = {"horizontal": v, "vertical": u, "rising": (u + v) / 2, "falling": (u - v + 1) / 2}[orientation]
    texture = 0.5 + style.stripe_contrast * np.sin(2 * np.pi * freq * phase + rng.uniform(-0.3, 0.3))
    nir = np.where(inside, texture, 0.25 + 0.1 * rng.random((h, w)))
    nir = np.repeat(nir[..., None], 3, axis=2)

    heat = np.where(inside, 0.3, 0.05)
    for cell in SPOT_LAYOUTS[tir_code]:
        r, c = SPOT_CELLS[cell]
        sy, sx = cy - bh / 2 + (r + 0.5) * bh / 2, cx - bw / 2 + (c + 0.5) * bw / 3
        spot = np.exp(-(((yy - sy) / (0.16 * bh)) ** 2 + ((xx - sx) / (0.12 * bw)) ** 2))
        heat = heat + style.spot_heat * spot
    if cam == style.weak_thermal_camera:  # weak thermal contrast
        heat = 0.35 + 0.3 * (heat - 0.35)
    heat = np.clip(heat, 0, 1)
    tir = np.stack([heat, heat**2, 0.6 * (1 - heat)], axis=2)  # pseudo-colour, as in RGBNT100

    out = np.stack([rgb, nir, tir])
    if rng.random() < 0.3:  # partial occlusion, at the same place in every modality
        oh, ow = int(h * rng.uniform(0.2, 0.45)), int(w * rng.uniform(0.2, 0.45))
        oy, ox = rng.integers(0, h - oh), rng.integers(0, w - ow)
        out[:, oy : oy + oh, ox : ox + ow] = rng.uniform(0.2, 0.5)
    if cam % 2 == 0:  # even cameras see the object from the other side
        out = out[:, :, ::-1]
    out = out + rng.normal(0, 0.03, out.shape)
    return np.clip(out, 0, 1)


def captions(code: tuple[int, int, int], rng: np.random.Generator) -> dict[str, str]:
    """A caption per modality tag from a random non-empty subset of that modality's attributes."""
    names = list(PALETTE)
    top, bottom = names[code[0] // len(PALETTE)], names[code[0] % len(PALETTE)]
    orientation, freq = STRIPES[code[1]]
    cells = [CELL_NAMES[c] for c in SPOT_LAYOUTS[code[2]]]
    attrs = {
        "RGB": [f"a {top} upper part", f"a {bottom} lower part"],
        "NI": [f"{orientation} stripes", "dense stripes" if freq == 4 else "wide stripes"],
        "TI": [f"a hot spot at the {cells[0]}", f"a hot spot at the {cells[1]}"],
    }
    out = {}
    for tag, items in attrs.items():
        keep = [a for a in items if rng.random() < 0.7] or [items[int(rng.integers(len(items)))]]
        out[tag] = "An object with " + " and ".join(keep) + "."
    return out


def caption_vocabulary() -> list[str]:
    """A BERT WordPiece vocabulary covering every caption :func:`captions` can write (special tokens
    first). The generator saves it as ``vocab.txt`` so text methods run without downloading one."""
    words = [
        "an",
        "object",
        "with",
        "and",
        "a",
        "upper",
        "part",
        "lower",
        "stripes",
        "dense",
        "wide",
        "hot",
        "spot",
        "at",
        "the",
        *PALETTE,
        *dict.fromkeys(o for o, _ in STRIPES),
        *dict.fromkeys(w for name in CELL_NAMES for w in name.split()),
    ]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *dict.fromkeys(words)]


def generate(root: Path, config: SyntheticConfig = SyntheticConfig(), show_progress: bool = True) -> Path:
    """Write the dataset under ``root/config.key()`` unless it is already complete; return that folder.

    Written to a temporary folder and renamed at the end, so a crash never leaves half a dataset.
    """
    target = Path(root) / config.key()
    if (target / "COMPLETE").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=target.parent))
    try:
        _write(tmp, config, show_progress)
        (tmp / "COMPLETE").write_text(json.dumps(asdict(config)))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "COMPLETE").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_data_root(data_root: Path, config: SyntheticConfig, show_progress: bool = False) -> Path:
    """Generate ``config`` as ``<data_root>/<official folder>`` (e.g. ``RGBNT201``); return that folder."""
    target = Path(data_root) / LAYOUTS[config.layout][0]
    if target.exists():
        raise FileExistsError(f"{target} exists")
    Path(data_root).mkdir(parents=True, exist_ok=True)
    generate(Path(data_root) / ".generated", config, show_progress).rename(target)
    return target


def item_paths(out: Path, item: Item, layout: str) -> list[tuple[Path, tuple[str, ...]]]:
    """Where ``item`` is written: (file, modality tags it holds) pairs, plus its file name."""
    folder, tags, _ = LAYOUTS[layout]
    if layout in ("rgbnt100", "rgbn300"):
        split = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}[item.split]
        return [(out / "rgbir" / split / f"{item.pid:04d}_c{item.cam:04d}_{item.n:03d}.jpg", tags)]
    if layout == "rgbnt201":
        split = "train_171" if item.split == "train" else "test"
        name = f"{item.pid:06d}_cam{item.cam}_{item.n % 2}_{item.n:02d}.jpg"
        return [(out / split / tag / name, (tag,)) for tag in tags]
    if layout == "msvr310":
        split = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query3"}[item.split]
        name = f"{item.pid:04d}_s{item.scene:03d}_v{item.cam - 1}_{item.n:03d}.jpg"
        return [
            (out / split / f"{item.pid:04d}" / sub / name, (tag,))
            for tag, sub in zip(tags, ("vis", "ni", "th"), strict=True)
        ]
    name = f"{item.pid:04d}_c{item.cam}s1_{item.n:06d}_01.jpg"  # market1501_mm
    return [(out / item.split / tag / name, (tag,)) for tag in tags]


def _write(out: Path, cfg: SyntheticConfig, show_progress: bool) -> None:
    rng = np.random.default_rng(cfg.seed + 1)
    tags = LAYOUTS[cfg.layout][1]
    texts: dict[str, list[dict[str, str]]] = {}
    items = plan(cfg)
    if cfg.layout == "msvr310":  # query3: the gallery images of identities seen in two scenes
        items += [
            Item("query", it.pid, it.cam, it.n, it.scene, it.code)
            for it in items
            if it.split == "gallery" and scenes_of(_index(it, cfg)) > 1
        ]
    (out / "vocab.txt").write_text("\n".join(caption_vocabulary()) + "\n")
    rendered: dict[tuple[int, int, int, int], np.ndarray] = {}
    for item in progress_bar(items, "generating synthetic dataset", show_progress):
        key = (item.pid, item.cam, item.n, item.scene)
        if key not in rendered:  # query3 copies reuse the gallery rendering
            local_cam = item.cam - cfg.style.first_camera + 1
            tiles = render_sample(item.code, local_cam, rng, cfg.height, cfg.width, cfg.style)
            rendered[key] = tiles[: len(tags)]
            captions_of = captions(item.code, rng)
            split = "train" if item.split == "train" else "test"
            name = item_paths(out, item, cfg.layout)[0][0].name
            for tag in tags:
                texts.setdefault(f"{split}_{tag}", []).append({"item": name, "description": captions_of[tag]})
        tiles = rendered[key]
        for path, file_tags in item_paths(out, item, cfg.layout):
            image = np.concatenate([tiles[tags.index(t)] for t in file_tags], axis=1)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(path, quality=92)
    if cfg.layout == "market1501_mm":  # Market's junk images (identity -1) are not samples
        junk = Item("gallery", -1, 1, 0, 0, (0, 0, 0))
        for path, _ in item_paths(out, junk, cfg.layout):
            path = path.with_name("-1_c1s1_000000_00.jpg")
            Image.fromarray(np.zeros((cfg.height, cfg.width, 3), np.uint8)).save(path)
    (out / "text").mkdir()
    for key, text_items in texts.items():
        (out / "text" / f"{key}.json").write_text(json.dumps(text_items, indent=0))
