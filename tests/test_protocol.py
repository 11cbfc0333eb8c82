from pathlib import Path

import pytest

from reidbench.errors import UserError
from reidbench.protocol import build_protocol, config_hash
from reidbench.spec import RunSpec


def test_synthetic_protocol_loads_with_types():
    p = build_protocol("synthetic")
    assert p.dataset == "synthetic"
    assert p.data.image_size == [32, 64]
    assert isinstance(p.optim.lr, float)
    assert p.backbone.pretrained is False


def test_dotted_overrides_are_type_checked_and_coerced():
    p = build_protocol(
        "synthetic",
        [
            "optim.lr=3e-4",
            "sampler.p=6",
            "data.modalities=[rgb, nir]",
            "loss.triplet_margin=null",
            "data.mean.rgb=[0.4, 0.4, 0.4]",
        ],
    )
    assert p.optim.lr == pytest.approx(3e-4)  # YAML 1.1 reads 3e-4 as a string; coerced to float
    assert p.sampler.p == 6
    assert p.data.modalities == ["rgb", "nir"]
    assert p.loss.triplet_margin is None
    assert p.data.mean == {"rgb": [0.4, 0.4, 0.4]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "Valid keys under optim: name, lr"),
        ("optimizer.lr=1", "Valid keys: dataset, data, sampler"),
        ("sampler.p=many", "sampler.p: expected int"),
        ("optim.name=lamb", "expected one of 'adamw', 'adam', 'sgd'"),
        ("optim.lr", "not of the form key=value"),
        ("train.stages.3.lr=1", "expected a list index below 0"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(UserError) as err:
        build_protocol("synthetic", [override])
    assert message in str(err.value)


def test_stages_inherit_defaults():
    p = build_protocol(
        "synthetic",
        [
            "train.stages=[{name: frozen, epochs: 2, freeze: [backbone]}, {name: full}]",
            "train.epochs=5",
            "optim.lr=0.01",
        ],
    )
    s1, s2 = p.resolved_stages()
    assert (s1.name, s1.epochs, s1.freeze, s1.lr) == ("frozen", 2, ["backbone"], 0.01)
    assert (s2.name, s2.epochs, s2.loss) == ("full", 5, p.loss.variant)
    assert build_protocol("synthetic").resolved_stages()[0].epochs == 12


def test_unknown_protocol_lists_known_ones():
    with pytest.raises(UserError, match="synthetic"):
        build_protocol("nope")


def test_config_hash_is_stable_and_sensitive():
    def spec(*overrides, seed=0):
        return RunSpec("late_fusion", "synthetic", seed, build_protocol("synthetic", list(overrides)))

    base = config_hash(spec().config())
    assert base == config_hash(spec().config())
    assert len(base) == 12
    assert base == config_hash(spec("optim.lr=1e-3").config())  # same value as the YAML default
    assert base != config_hash(spec("optim.lr=2e-3").config())
    assert base != config_hash(spec(seed=1).config())
    reordered = dict(reversed(list(spec().config().items())))
    assert base == config_hash(reordered)


def test_method_settings_apply_to_their_method_only(monkeypatch, tmp_path):
    from reidbench.spec import make_spec

    mmet = make_spec("mmet", "synthetic", 0).protocol.method
    assert (mmet["tokenizer"], mmet["text_hidden"], mmet["text_pretrained"]) == ("vocab.txt", 64, False)
    assert "text_hidden" not in make_spec("late_fusion", "synthetic", 0).protocol.method
    assert make_spec("mmet", "synthetic", 0, ["method.text_hidden=32"]).protocol.method["text_hidden"] == 32

    text = (Path(__file__).parents[1] / "benchmarks" / "protocols" / "synthetic.yaml").read_text()
    (tmp_path / "synthetic.yaml").write_text(
        text.split("method_settings:")[0] + "method_settings:\n  mmet: 3\n"
    )
    monkeypatch.setenv("REIDBENCH_PROTOCOLS", str(tmp_path))
    with pytest.raises(UserError, match="method_settings must map method names"):
        build_protocol("synthetic", method="mmet")


def test_synthetic_vocab_covers_the_captions_and_mmet_finds_it(synthetic_dataset):
    from reidbench.data.synthetic import caption_vocabulary
    from reidbench.nn.factory import create_tokenizer
    from reidbench.spec import make_spec

    spec = make_spec("mmet", "synthetic", 0)
    tokenizer = create_tokenizer(
        "mmet", spec.protocol.method, spec.protocol, synthetic_dataset.info
    ).tokenizer
    assert len(tokenizer) == len(caption_vocabulary())
    texts = [s.caption for s in synthetic_dataset.splits.train if s.caption]
    assert texts, "the synthetic dataset carries captions"
    ids = tokenizer(texts)["input_ids"]
    assert tokenizer.unk_token_id not in {i for row in ids for i in row}
