"""The msgspec and pydantic adapters of typed rpc: strict loading, field paths, output checks."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

import msgspec
import pydantic
import pytest

from wsguard.model import MAX_MESSAGE, ModelAdapter, ModelViolation, is_model


class MItem(msgspec.Struct, forbid_unknown_fields=True):
    sku: Annotated[str, msgspec.Meta(max_length=8)]
    qty: Annotated[int, msgspec.Meta(ge=1)]


class MOrder(msgspec.Struct):
    items: list[MItem]
    kind: Literal["buy", "sell"] = "buy"
    when: datetime.datetime | None = None
    tags: dict[str, int] = {}


class PItem(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    sku: str = pydantic.Field(max_length=8)
    qty: int = pydantic.Field(ge=1)


class POrder(pydantic.BaseModel):
    items: list[PItem]
    kind: Literal["buy", "sell"] = "buy"
    when: datetime.datetime | None = None
    tags: dict[str, int] = {}


def violation(model: type, data: object) -> str:
    with pytest.raises(ModelViolation) as caught:
        ModelAdapter.for_type(model).load(data)
    return str(caught.value)


def test_only_msgspec_structs_and_pydantic_models_are_models() -> None:
    assert is_model(MOrder)
    assert is_model(POrder)
    assert not is_model(dict)
    assert not is_model(MOrder(items=[]))
    with pytest.raises(TypeError, match=r"msgspec\.Struct or pydantic\.BaseModel"):
        ModelAdapter.for_type(dict)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"items": [{"sku": "A", "qty": "1"}]}, "data.items[0].qty: Expected int, got str"),
        ({"items": [{"sku": "A", "qty": 0}]}, "data.items[0].qty: Expected int >= 1"),
        ({"items": [{"qty": 1}]}, "data.items[0]: Object missing required field sku"),
        ({"items": [], "tags": {"k": "v"}}, "data.tags[?]: Expected int, got str"),
        (5, "data: Expected object, got int"),
    ],
)
def test_msgspec_errors_name_the_field_path(data: object, message: str) -> None:
    assert violation(MOrder, data) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"items": [{"sku": "A", "qty": "1"}]},
            "data.items[0].qty: Input should be a valid integer",
        ),
        (
            {"items": [{"sku": "A", "qty": 0}]},
            "data.items[0].qty: Input should be greater than or equal to 1",
        ),
        ({"items": [{"qty": 1}]}, "data.items[0].sku: Field required"),
        ({"items": [], "tags": {"k": "v"}}, "data.tags.k: Input should be a valid integer"),
        (5, "data: Input should be an object"),
    ],
)
def test_pydantic_errors_name_the_field_path(data: object, message: str) -> None:
    assert violation(POrder, data) == message


@pytest.mark.parametrize("model", [MOrder, POrder])
def test_the_peers_values_and_unsafe_keys_are_never_reflected(model: type) -> None:
    secret = "SECRET-<script>"
    for data in (
        {"items": [], "kind": secret},
        {"items": [{"sku": secret, "qty": 1}]},
        {"items": [{"sku": "A", "qty": 1, secret: 1}]},
        {"items": [], "when": secret},
        {"items": [], "tags": {secret: "x"}},
    ):
        message = violation(model, data)
        assert "SECRET" not in message
        assert "<script" not in message
        assert message.startswith("data")


@pytest.mark.parametrize("model", [MOrder, POrder])
def test_loading_is_strict_but_json_shaped(model: type) -> None:
    adapter = ModelAdapter.for_type(model)
    order = adapter.load({"items": [{"sku": "A", "qty": 2}], "when": "2024-01-02T03:04:05Z"})
    assert isinstance(order, model)
    assert order.when == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert violation(model, {"items": [], "when": 5}).startswith("data.when: ")
    assert violation(model, {"items": [{"sku": "A", "qty": 1.0}]}).startswith("data.items[0].qty")


@pytest.mark.parametrize(("model", "item"), [(MOrder, MItem), (POrder, PItem)])
def test_dump_encodes_instances_and_validates_dicts(model: type, item: type) -> None:
    adapter = ModelAdapter.for_type(model)
    expected = {"items": [{"sku": "A", "qty": 2}], "kind": "sell", "when": None, "tags": {}}
    assert adapter.dump(model(items=[item(sku="A", qty=2)], kind="sell")) == expected
    # A dict is validated; keys outside the model are not sent.
    assert adapter.dump({"items": [{"sku": "A", "qty": 2}], "kind": "sell", "x": "no"}) == expected


@pytest.mark.parametrize(("model", "item"), [(MOrder, MItem), (POrder, PItem)])
def test_dump_refuses_what_violates_the_output_model(model: type, item: type) -> None:
    adapter = ModelAdapter.for_type(model)
    with pytest.raises(ModelViolation, match=r"^result\.items\[0\]\.qty: ") as caught:
        adapter.dump({"items": [{"sku": "A", "qty": "SECRET"}]})
    assert "SECRET" not in str(caught.value)
    # An instance built without validation is checked too.
    if model is MOrder:
        bad = model(items=[item(sku="A", qty=0)])
    else:
        bad = model.model_construct(items=[item.model_construct(sku="A", qty=0)])
    with pytest.raises(ModelViolation, match=r"^result\.items\[0\]\.qty: "):
        adapter.dump(bad)
    with pytest.raises(ModelViolation, match=r"^result"):
        adapter.dump(object())


def test_deep_paths_and_long_messages_stay_bounded() -> None:
    class Deep(msgspec.Struct):
        x: list[
            list[
                list[
                    list[
                        list[
                            list[
                                list[
                                    list[list[list[list[list[list[list[list[list[list[int]]]]]]]]]]
                                ]
                            ]
                        ]
                    ]
                ]
            ]
        ]

    data: object = "s"
    for _ in range(17):
        data = [data]
    message = violation(Deep, {"x": data})
    assert message.startswith("data[...]")
    assert len(message) < 200 + MAX_MESSAGE


def test_app_is_exported_and_the_model_module_curated() -> None:
    import wsguard
    import wsguard.app
    import wsguard.model

    assert wsguard.App is wsguard.app.App
    assert "App" in wsguard.__all__
    assert wsguard.app.__all__ == ["App"]
    assert wsguard.model.__all__ == ["ModelAdapter", "ModelViolation", "is_model"]
