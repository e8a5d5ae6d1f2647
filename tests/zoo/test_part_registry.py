import pytest

import zoo
from zoo.errors import UnknownNameError, ZooError
from zoo.part_registry import PartRegistry
from zoo.spec import Method, Part


def test_duplicate_registration_raises():
    reg = PartRegistry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(ZooError, match="widget 'a' is already registered"):
        reg.register("a")(lambda: 2)


def test_real_registries_refuse_duplicates():
    with pytest.raises(ZooError, match="encoder 'amdim' is already registered"):
        zoo.REGISTRIES["encoder"].register("amdim")(object)
    with pytest.raises(ZooError, match="method 'yadim' is already registered"):
        zoo.register_method(zoo.get_method("yadim"))


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown encoder 'amdm'; did you mean 'amdim'\?"):
        zoo.REGISTRIES["encoder"].get("amdm")
    with pytest.raises(UnknownNameError, match=r"unknown method 'simclear'; did you mean 'simclr'"):
        zoo.get_method("simclear")


def test_unknown_keyword_names_the_argument():
    with pytest.raises(ZooError, match=r"similarity 'cosine' got unknown argument\(s\) \['temprature'\] "
                                       r"\(did you mean 'temperature'\?\)"):
        zoo.REGISTRIES["similarity"].build("cosine", {"temprature": 0.5})


def test_missing_dataset_knowledge_is_reported():
    with pytest.raises(ZooError, match=r"augmentation 'yadim' needs argument\(s\) \['size', 'mean', 'std'\]"):
        zoo.REGISTRIES["augment"].build("yadim", {})


def test_method_round_trips_through_dict():
    row = zoo.get_method("yadim").with_overrides(encoder={"ndf": 8})
    again = Method.from_dict(row.to_dict())
    assert again == row
    assert again.encoder.kwargs["ndf"] == 8 and again.encoder.kwargs["n_rkhs"] == 1024


def test_override_with_new_name_replaces_part():
    row = zoo.get_method("simclr").with_overrides(similarity={"name": "dot", "tanh_clip": 20.0})
    assert row.similarity == Part.of("dot", tanh_clip=20.0)


def test_list_methods_and_parts():
    assert {"simclr", "yadim"} <= set(zoo.list_methods())
    assert {"simclr", "amdim", "cpc", "yadim"} <= set(zoo.list_parts("augment"))
    with pytest.raises(ZooError, match="unknown characteristic"):
        zoo.list_parts("encoders")
