"""The Kafka broker's bookkeeping without a server: record keys, the committed position of a
partition, and the commit metadata that carries delivery counts to the partition's next owner
(the conformance suite runs on Tansu, which does not keep commit metadata)."""

from __future__ import annotations

import json

import pytest
from aiokafka.structs import TopicPartition

from magicflow.brokers.kafka import (
    MAX_METADATA,
    _Held,
    _key,
    _parse_metadata,
    _Partition,
    _settings,
)
from magicflow.errors import ConfigurationError


def partition() -> _Partition:
    return _Partition(TopicPartition("t", 0), {})


def hold(part: _Partition, offset: int, count: int = 1) -> _Held:
    held = _Held(part, offset, b"x", count, 0.0)
    part.held[offset] = held
    part.end = max(part.end, offset + 1)
    return held


def test_an_execution_s_messages_are_keyed_by_it() -> None:
    task = json.dumps({"id": "t1", "execution_id": "exec-9", "input": {"a": [1, 2]}}).encode()
    assert _key(task) == b"exec-9"
    assert _key(b'{"task_id": "t", "execution_id": null}') is None
    assert _key(b"plain bytes") is None
    assert _key(b"{not json") is None
    assert _key(b"") is None


def test_the_position_is_the_first_offset_not_settled() -> None:
    part = partition()
    for offset in (10, 11, 12, 14):  # 13: a gap (a control record, compaction)
        hold(part, offset)
    assert part.position() == 10
    del part.held[10], part.held[12]
    part.settled |= {10, 12}
    assert part.position() == 11
    del part.held[11], part.held[14]
    part.settled |= {11, 14}
    assert part.position() == 15  # one past the last fetched


def test_metadata_round_trips_counts_and_settled_offsets() -> None:
    part = partition()
    for offset in range(100, 110):
        hold(part, offset)
    part.held[103].count = 4
    for offset in (105, 106, 107):
        del part.held[offset]
        part.settled.add(offset)
    text = part.metadata()
    assert text == "100-102=1,103=4,104=1,105-107=0,108-109=1"
    prior = _parse_metadata(text)
    assert (prior[100], prior[103], prior[106], prior[109]) == (1, 4, 0, 1)
    assert 110 not in prior


def test_settled_offsets_below_the_position_are_forgotten() -> None:
    part = partition()
    hold(part, 5)
    part.settled |= {3, 4, 6}
    assert part.metadata() == "5=1,6=0"
    assert part.settled == {6}


def test_metadata_is_cut_to_what_kafka_accepts() -> None:
    part = partition()
    for offset in range(0, 20_000, 2):  # no runs: every offset its own entry
        hold(part, offset, count=offset % 7 + 1)
    text = part.metadata()
    assert 0 < len(text) <= MAX_METADATA
    assert _parse_metadata(text)[0] == 1  # the lowest offsets are the ones kept


def test_foreign_metadata_teaches_nothing() -> None:
    assert _parse_metadata("") == {}
    assert _parse_metadata(None) == {}
    assert _parse_metadata("written by another tool") == {}
    assert _parse_metadata("1-3=2,junk,9=0") == {1: 2, 2: 2, 3: 2, 9: 0}


def test_url_options() -> None:
    settings = _settings("kafka://a:1,b,c:3?partitions=4&visibility_timeout=2.5")
    assert settings.servers == ["a:1", "b:9092", "c:3"]
    assert (settings.partitions, settings.visibility_timeout) == (4, 2.5)
    with pytest.raises(ConfigurationError, match="unknown URL option 'colour'"):
        _settings("kafka://a:1?colour=blue")
    with pytest.raises(ConfigurationError, match="replication_factor must be positive"):
        _settings("kafka://a:1?replication_factor=0")
