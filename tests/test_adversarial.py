"""Damage and hostile input found by attacking the registry as a client and as an operator would: each test
breaks something on purpose and checks that the registry still answers from the log, or says clearly why not."""
from __future__ import annotations

import logging

import pytest

from handler.catalog import keys
from handler.catalog import workspace as catalog
from handler.catalog.keys import record_key
from handler.errors import CatalogDamaged
from handler.registry.models import Registry
from handler.stores.base import Store
from tests.test_catalog_heals import names, normal, seed
from tests.test_catalog_scale import without_checkpoints

K = catalog.CHECKPOINT_EVERY


def test_a_segment_damaged_inside_a_line_that_still_parses_is_read_from_the_log_instead(
        any_store: Store, monkeypatch, caplog) -> None:
    without_checkpoints(monkeypatch)
    seed(any_store, 3 * K)
    key = keys.segment_key("ws", 2 * K)
    data = any_store.get(key)
    assert b'"ModelName":"m0040"' in data
    # One damaged byte: the line still parses and still chains, but says what no commit said.
    any_store.put(key, data.replace(b'"ModelName":"m0040"', b'"ModelName":"m0o40"'))
    with caplog.at_level(logging.WARNING):
        cold = Registry(any_store)
        assert names(cold) == [f"m{i:04d}" for i in range(3 * K)]
    assert "skipped the segment" in caplog.text


def test_a_record_file_naming_a_workspace_id_no_workspace_can_have_is_looked_for_not_blamed_on_the_request(
        any_store: Store) -> None:
    registry = Registry(any_store)
    model_id = registry.create(normal("m"))[0]
    record = any_store.get(record_key(model_id))
    for damaged in (b'{"WorkspaceId": "../../etc"}', b'{"WorkspaceId": "a/b"}', b'{"WorkspaceId": "x\\u0000"}'):
        any_store.put(record_key(model_id), damaged)  # changed by hand: the request is fine, the file is not
        assert Registry(any_store).get(model_id)["ModelId"] == model_id
        assert any_store.get(record_key(model_id)) == record


def test_a_commit_that_is_not_json_fails_closed_and_tells_the_operator_which(any_store: Store, caplog) -> None:
    writer = Registry(any_store)
    for i in range(3):
        writer.create(normal(f"m{i}"))
    any_store.put(keys.log_key("ws", 2), b'{"Seq": 2, "Tx')  # cut short by hand
    with caplog.at_level(logging.ERROR), pytest.raises(CatalogDamaged):
        names(Registry(any_store))
    assert "workspace ws: commit 2 is not JSON; its log needs repair" in caplog.text
