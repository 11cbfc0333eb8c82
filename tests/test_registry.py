import pytest

from reidbench.errors import UserError
from reidbench.registry import DATASETS, METHODS, Registry, load_plugins


def test_register_get_and_list():
    reg = Registry("thing")

    @reg.register("b", "the b thing", knob=1)
    def build_b():
        return "b"

    @reg.register("a", "the a thing")
    def build_a():
        return "a"

    assert reg.names() == ["a", "b"]
    assert reg.get("b").builder() == "b"
    assert reg.get("b").meta == {"knob": 1}
    assert "a" in reg and len(reg) == 2
    assert [e.name for e in reg] == ["a", "b"]


def test_unknown_name_lists_valid_names_and_suggests():
    reg = Registry("thing")
    reg.register("late_fusion", "x")(lambda: None)
    reg.register("graft", "y")(lambda: None)
    with pytest.raises(UserError) as err:
        reg.get("late_fusoin")
    assert "late_fusion" in str(err.value) and "graft" in str(err.value) and "Did you mean" in str(err.value)


def test_duplicate_registration_fails():
    reg = Registry("thing")
    reg.register("a", "x")(lambda: None)
    with pytest.raises(ValueError):
        reg.register("a", "y")(lambda: None)


def test_plugins_fill_the_registries():
    load_plugins()
    assert "late_fusion" in METHODS
    assert "synthetic" in DATASETS and "rgbnt100" in DATASETS
    assert all(e.description for e in METHODS) and all(e.description for e in DATASETS)
