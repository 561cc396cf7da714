"""Every model operation through PAI's official SDK, unmodified, over real HTTP, on every store."""
from __future__ import annotations

import json
from typing import Any

import pytest
from alibabacloud_aiworkspace20210204 import models
from alibabacloud_aiworkspace20210204.client import Client

from handler.catalog.keys import record_key
from handler.rules.validation import validator
from handler.stores.base import Store
from tests.conftest import invoke
from tests.conftest import sdk_raises as raises


def create(client: Client, name: str, **fields: Any) -> str:
    return str(client.create_model(models.CreateModelRequest(model_name=name, **fields)).body.model_id)


def listing(client: Client, **query: Any) -> tuple[list[str], int]:
    body = client.list_models(models.ListModelsRequest(**query)).body
    return [m.model_name for m in body.models], body.total_count


def test_get_answers_every_field_as_created(sdk: Client, any_store: Store) -> None:
    model_id = create(sdk, "新闻分类", domain="nlp", task="text-classification", order_number=3, parameter_size=7000,
                      extra_info={"Rating": 4.9, "Nested": {"a": [1, None]}}, tag=[models.Label(key="team", value="nlp")])
    response = sdk.get_model(model_id, models.GetModelRequest())
    body = response.body
    assert (body.model_id, body.model_name, body.domain, body.task) == (model_id, "新闻分类", "nlp", "text-classification")
    assert (body.order_number, body.parameter_size, body.workspace_id) == (3, 7000, "default")
    assert body.extra_info == {"Rating": 4.9, "Nested": {"a": [1, None]}}
    assert [(lb.key, lb.value) for lb in body.labels] == [("team", "nlp")]
    raw = invoke({"httpMethod": "GET", "path": f"/api/v1/models/{model_id}", "headers": {}})
    answer = json.loads(raw["body"])
    validator("get-model-response.json").validate(answer)
    assert json.loads(any_store.get(record_key(model_id))) == {k: v for k, v in answer.items() if k != "RequestId"}


def test_an_unknown_or_malformed_model_id_is_a_clear_error(sdk: Client) -> None:
    raises("ModelNotFound", 404, lambda: sdk.get_model("model-doesnotexist", models.GetModelRequest()))
    message = raises("InvalidParameter", 400, lambda: sdk.get_model("../etc/passwd", models.GetModelRequest()))
    assert "ModelId" in message


def test_list_filters_sorts_pages_and_counts(sdk: Client) -> None:
    create(sdk, "bert-base", domain="nlp", task="fill-mask", order_number=2, parameter_size=110,
           tag=[models.Label(key="team", value="search"), models.Label(key="Collection", value="bert")])
    create(sdk, "bert-large", domain="nlp", task="fill-mask", order_number=1, parameter_size=340,
           tag=[models.Label(key="team", value="ads"), models.Label(key="Collection", value="bert")])
    create(sdk, "resnet", domain="cv", task="classification", tag=[models.Label(key="team", value="vision")])
    create(sdk, "elsewhere", workspace_id="other")

    assert listing(sdk) == (["bert-base", "bert-large", "resnet"], 3)
    assert listing(sdk, order="DESC") == (["resnet", "bert-large", "bert-base"], 3)
    assert listing(sdk, model_name="BERT") == (["bert-base", "bert-large"], 2)  # unquoted: substring, any case
    assert listing(sdk, model_name='"bert"') == ([], 0)  # quoted: exactly this name
    assert listing(sdk, model_name='"bert-large"') == (["bert-large"], 1)
    assert listing(sdk, domain="nlp", task="fill-mask") == (["bert-base", "bert-large"], 2)
    assert listing(sdk, label="vis") == (["resnet"], 1)
    assert listing(sdk, tag=[models.Label(key="team", value="ads"), models.Label(key="Collection", value="bert")]) == (["bert-large"], 1)
    assert listing(sdk, collections="bert,gpt") == (["bert-base", "bert-large"], 2)
    assert listing(sdk, query="SEARCH") == (["bert-base"], 1)  # a label value
    assert listing(sdk, query="classification") == (["resnet"], 1)  # the task
    assert listing(sdk, query="") == (["bert-base", "bert-large", "resnet"], 3)
    assert listing(sdk, sort_by="OrderNumber") == (["bert-large", "bert-base", "resnet"], 3)  # without one: last
    assert listing(sdk, sort_by="ParameterSize", order="DESC") == (["bert-large", "bert-base", "resnet"], 3)
    assert listing(sdk, sort_by="ModelName", order="DESC") == (["resnet", "bert-large", "bert-base"], 3)
    less = models.ListModelsRequestConditions(column="ParameterSize", operator="LessThan", value="300")
    assert listing(sdk, conditions=[less]) == (["bert-base"], 1)
    after = models.ListModelsRequestConditions(column="GmtCreateTime", operator="GreaterThan", value="2000-01-01T00:00:00Z")
    assert listing(sdk, conditions=[after, less]) == (["bert-base"], 1)
    assert listing(sdk, page_size=2, page_number=2) == (["resnet"], 3)
    assert listing(sdk, page_size=2, page_number=3) == ([], 3)
    assert listing(sdk, workspace_id="other") == (["elsewhere"], 1)
    items = sdk.list_models(models.ListModelsRequest()).body.to_map()
    validator("list-models-response.json").validate(items)
    assert isinstance(items["TotalCount"], int) and all("Tags" in m and "Labels" in m for m in items["Models"])


@pytest.mark.parametrize(("query", "words"), [
    ({"conditions": [models.ListModelsRequestConditions(column="Colour", operator="LessThan", value="1")]}, "Column"),
    ({"conditions": [models.ListModelsRequestConditions(column="ParameterSize", operator="Near", value="1")]}, "Operator"),
    ({"conditions": [models.ListModelsRequestConditions(column="ParameterSize", operator="LessThan", value="big")]}, "number"),
    ({"conditions": [models.ListModelsRequestConditions(column="GmtCreateTime", operator="LessThan", value="yesterday")]}, "time"),
    ({"page_size": 101}, "PageSize"),
    ({"page_number": 0}, "PageNumber"),
    ({"sort_by": "Colour"}, "SortBy"),
    ({"order": "UP"}, "Order"),
    ({"workspace_id": "../x"}, "WorkspaceId"),
])
def test_a_bad_list_query_is_a_400_naming_the_parameter(sdk: Client, query: dict[str, Any], words: str) -> None:
    assert words in raises("InvalidParameter", 400, lambda: sdk.list_models(models.ListModelsRequest(**query)))


def test_update_changes_only_the_given_fields_and_keeps_names_unique(sdk: Client, any_store: Store) -> None:
    model_id = create(sdk, "draft", domain="nlp", order_number=1, extra_info={"a": 1})
    other = create(sdk, "taken")
    before = sdk.get_model(model_id, models.GetModelRequest()).body
    sdk.update_model(model_id, models.UpdateModelRequest(model_name="final", model_description="done", extra_info={"b": 2}))
    after = sdk.get_model(model_id, models.GetModelRequest()).body
    assert (after.model_name, after.model_description, after.domain, after.order_number) == ("final", "done", "nlp", 1)
    assert after.extra_info == {"b": 2} and after.gmt_create_time == before.gmt_create_time
    assert after.gmt_modified_time >= before.gmt_modified_time
    assert json.loads(any_store.get(record_key(model_id)))["ModelName"] == "final"

    message = raises("ModelAlreadyExists", 409, lambda: sdk.update_model(model_id, models.UpdateModelRequest(model_name="taken")))
    assert other in message
    assert create(sdk, "draft") != model_id  # the old name is free again
    sdk.update_model(model_id, models.UpdateModelRequest(model_name="final", model_description="done"))  # a retry
    assert listing(sdk, model_name='"final"') == (["final"], 1)
    raises("ModelNotFound", 404, lambda: sdk.update_model("model-nope", models.UpdateModelRequest(model_name="x")))
    raises("InvalidParameter", 400, lambda: sdk.update_model(model_id, models.UpdateModelRequest(model_name="")))


def test_delete_removes_the_model_its_record_and_frees_its_name(sdk: Client, any_store: Store) -> None:
    model_id = create(sdk, "retired", domain="nlp")
    sdk.delete_model(model_id, models.DeleteModelRequest())
    raises("ModelNotFound", 404, lambda: sdk.get_model(model_id, models.GetModelRequest()))
    assert listing(sdk) == ([], 0)
    assert any_store.list("models/") == []
    raises("ModelNotFound", 404, lambda: sdk.delete_model(model_id, models.DeleteModelRequest()))
    assert create(sdk, "retired", domain="cv") != model_id


def test_labels_are_added_replaced_by_key_and_removed(sdk: Client, any_store: Store) -> None:
    model_id = create(sdk, "labelled", tag=[models.Label(key="team", value="a"), models.Label(key="team", value="b"),
                                            models.Label(key="stage", value="dev")])
    sdk.create_model_labels(model_id, models.CreateModelLabelsRequest(labels=[
        models.Label(key="team", value="c"), models.Label(key="owner", value="x")]))
    labels = [(lb.key, lb.value) for lb in sdk.get_model(model_id, models.GetModelRequest()).body.labels]
    assert labels == [("stage", "dev"), ("team", "c"), ("owner", "x")]
    sdk.delete_model_labels(model_id, models.DeleteModelLabelsRequest(label_keys="team,absent"))
    labels = [(lb.key, lb.value) for lb in sdk.get_model(model_id, models.GetModelRequest()).body.labels]
    assert labels == [("stage", "dev"), ("owner", "x")]
    record = json.loads(any_store.get(record_key(model_id)))
    assert record["Labels"] == record["Tags"] == [{"Key": "stage", "Value": "dev"}, {"Key": "owner", "Value": "x"}]
    assert listing(sdk, label="owner") == (["labelled"], 1)
    raises("InvalidParameter", 400, lambda: sdk.create_model_labels(
        model_id, models.CreateModelLabelsRequest(labels=[models.Label(key="a=b", value="v")])))
    raises("InvalidParameter", 400, lambda: sdk.delete_model_labels(model_id, models.DeleteModelLabelsRequest()))
    raises("ModelNotFound", 404, lambda: sdk.create_model_labels(
        "model-nope", models.CreateModelLabelsRequest(labels=[models.Label(key="k", value="v")])))
