"""The Store contract: one suite, run against every backend (stores/base.py states the rules).

PostgreSQL and Redis run against the real servers (``tests/service_stores.py``), each test on a
fresh schema or key prefix; in CI a missing server is a failure, never a skip.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from magicflow.errors import ConfigurationError, ConflictError
from magicflow.stores import (
    ApiKeyRecord,
    DefinitionRecord,
    DeliveryRecord,
    EventStreamRecord,
    ScheduleRecord,
    Store,
    Transition,
    TriggerRecord,
    WebhookRecord,
    store_from_url,
)

from ..service_stores import postgresql_url, redis_url

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.services),
    pytest.param("redis", marks=pytest.mark.services),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with AsyncExitStack() as stack:
        if request.param == "postgresql":
            url = await stack.enter_async_context(postgresql_url())
        elif request.param == "redis":
            url = await stack.enter_async_context(redis_url())
        else:
            url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'store.db'}"}[
                request.param
            ]
        backend = store_from_url(url)
        await backend.open()
        stack.push_async_callback(backend.close)
        yield backend


def definition(name: str = "wf", version: str = "1.0.0", digest: str = "d1") -> DefinitionRecord:
    return DefinitionRecord(
        name=name,
        version=version,
        digest=digest,
        document=b'{"name": "%s"}' % name.encode(),
        created_at=1.0,
        source="name: wf\n",
    )


def transition(
    execution_id: str,
    expected: int = 0,
    *,
    state: bytes = b"{}",
    workflow: str = "wf",
    status: str = "running",
    parent_id: str | None = None,
    **kwargs: object,
) -> Transition:
    return Transition(
        execution_id=execution_id,
        expected_version=expected,
        state=state,
        workflow=workflow,
        workflow_version="1.0.0",
        status=status,
        parent_id=parent_id,
        created_at=10.0,
        updated_at=11.0,
        **kwargs,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------ definitions


async def test_saving_a_definition_creates_it_once(store: Store) -> None:
    assert await store.save_definition(definition()) is True
    assert await store.save_definition(definition()) is False
    with pytest.raises(ConflictError):
        await store.save_definition(definition(digest="other"))
    stored = await store.get_definition("wf", "1.0.0")
    assert stored is not None
    assert (stored.digest, stored.document, stored.source) == (
        "d1",
        b'{"name": "wf"}',
        "name: wf\n",
    )


async def test_latest_is_the_highest_version_in_natural_order(store: Store) -> None:
    for version in ("1.10.0", "2.0.0-rc1", "1.9.0", "2.0.0", "1.2"):
        await store.save_definition(definition(version=version, digest=version))
    latest = await store.get_definition("wf")
    assert latest is not None
    assert latest.version == "2.0.0"
    assert await store.get_definition("nope") is None
    assert await store.get_definition("wf", "3") is None


async def test_definitions_are_listed_by_name_then_version(store: Store) -> None:
    await store.save_definition(definition("b", "1"))
    await store.save_definition(definition("a", "10"))
    await store.save_definition(definition("a", "9"))
    listed = [(d.name, d.version) for d in await store.list_definitions()]
    assert listed == [("a", "9"), ("a", "10"), ("b", "1")]
    assert [d.version for d in await store.list_definitions("a")] == ["9", "10"]


async def test_soft_delete_hides_a_version_but_keeps_it_readable(store: Store) -> None:
    await store.save_definition(definition(version="1"))
    await store.save_definition(definition(version="2", digest="d2"))
    assert await store.delete_definition("wf", "2") == 1
    assert await store.delete_definition("wf", "2") == 0
    latest = await store.get_definition("wf")
    assert latest is not None
    assert latest.version == "1"
    assert await store.get_definition("wf", "2") is None
    deleted = await store.get_definition("wf", "2", include_deleted=True)
    assert deleted is not None
    assert deleted.deleted
    assert [d.version for d in await store.list_definitions()] == ["1"]
    assert len(await store.list_definitions(include_deleted=True)) == 2
    assert await store.save_definition(definition(version="2", digest="d2")) is False
    assert [d.version for d in await store.list_definitions()] == ["1", "2"]
    assert await store.delete_definition("wf") == 2
    assert await store.get_definition("wf") is None


# ------------------------------------------------------------------ transitions


async def test_a_create_then_updates_bump_the_version(store: Store) -> None:
    assert await store.load("e1") is None
    result = await store.commit([transition("e1", state=b"v1")])
    assert result.conflicts == set()
    assert await store.load("e1") == (1, b"v1")
    await store.commit([transition("e1", 1, state=b"v2", status="completed")])
    assert await store.load("e1") == (2, b"v2")
    assert await store.load_many(["e1", "missing"]) == {"e1": (2, b"v2")}


async def test_a_conflicting_transition_is_not_applied_and_the_rest_commits(store: Store) -> None:
    await store.commit([transition("e1"), transition("e2")])
    result = await store.commit(
        [
            transition("e1", 5, state=b"stale", timers_set=[("t", 1.0)], outbox=[("q", b"x")]),
            transition("e2", 1, state=b"fresh", outbox=[("q", b"y")]),
            transition("e2", 0, state=b"again"),  # creating an existing execution
            transition("e3", 0, state=b"new", events=b"[1]"),
        ]
    )
    assert result.conflicts == {"e1", "e2"}
    assert [m.body for m in result.outbox] == [b"y"]
    assert await store.load("e1") == (1, b"{}")
    # e2's first transition applied; the second (a create) conflicted and left no trace
    assert await store.load("e2") == (2, b"fresh")
    assert await store.load("e3") == (1, b"new")
    assert await store.all_timers() == []
    assert [m.body for m in await store.pending_outbox(10)] == [b"y"]


async def test_transitions_of_one_execution_in_a_batch_chain_their_versions(store: Store) -> None:
    result = await store.commit([transition("e1", 0, state=b"a"), transition("e1", 1, state=b"b")])
    assert result.conflicts == set()
    assert await store.load("e1") == (2, b"b")
    result = await store.commit([transition("e1", 1), transition("e1", 2, state=b"c")])
    assert result.conflicts == {"e1"}
    assert await store.load("e1") == (2, b"b")


async def test_outbox_ids_increase_and_are_never_reused(store: Store) -> None:
    first = await store.commit([transition("e1", outbox=[("a", b"1"), ("b", b"2")])])
    ids = [m.id for m in first.outbox]
    assert ids == sorted(ids)
    assert [(m.queue, m.body) for m in first.outbox] == [("a", b"1"), ("b", b"2")]
    assert await store.pending_outbox(10) == first.outbox
    assert await store.pending_outbox(1) == first.outbox[:1]
    await store.delete_outbox(ids)
    assert await store.pending_outbox(10) == []
    second = await store.commit([transition("e1", 1, outbox=[("a", b"3")])])
    assert second.outbox[0].id > max(ids)
    third = await store.commit(
        [transition("e1", 2, outbox=[("a", b"4")])], done_outbox=[second.outbox[0].id]
    )
    assert await store.pending_outbox(10) == third.outbox


async def test_timers_are_set_moved_and_deleted_with_their_transition(store: Store) -> None:
    await store.commit([transition("e1", timers_set=[("a", 30.0), ("b", 10.0)])])
    await store.commit([transition("e2", timers_set=[("a", 20.0)])])
    assert [(t.execution_id, t.key, t.due) for t in await store.all_timers()] == [
        ("e1", "b", 10.0),
        ("e2", "a", 20.0),
        ("e1", "a", 30.0),
    ]
    assert [t.key for t in await store.due_timers(20.0, 10)] == ["b", "a"]
    assert len(await store.due_timers(20.0, 1)) == 1
    await store.commit([transition("e1", 1, timers_set=[("a", 5.0)], timers_deleted=["b"])])
    assert [(t.execution_id, t.key, t.due) for t in await store.all_timers()] == [
        ("e1", "a", 5.0),
        ("e2", "a", 20.0),
    ]
    await store.commit([transition("e1", 2, timers_deleted=["a", "missing"])])
    assert [t.execution_id for t in await store.all_timers()] == ["e2"]


async def test_idempotency_keys_are_recorded_on_create_and_unique(store: Store) -> None:
    await store.commit([transition("e1", idempotency_key="k")])
    assert await store.find_idempotent("wf", "k") == "e1"
    assert await store.find_idempotent("other", "k") is None
    result = await store.commit(
        [
            transition("e2", idempotency_key="k"),
            transition("e3", idempotency_key="k2"),
            transition("e4", idempotency_key="k2"),
            transition("e5", workflow="other", idempotency_key="k"),
        ]
    )
    assert result.conflicts == {"e2", "e4"}
    assert await store.load("e2") is None
    assert await store.find_idempotent("wf", "k2") == "e3"
    assert await store.find_idempotent("other", "k") == "e5"


async def test_breakers_are_written_last_wins(store: Store) -> None:
    assert await store.load_breakers() == {}
    await store.commit(
        [transition("e1", breakers=[("f", b"open")]), transition("e2", breakers=[("f", b"half")])]
    )
    await store.commit([transition("e3", breakers=[("g", b"closed")])])
    assert await store.load_breakers() == {"f": b"half", "g": b"closed"}


async def test_events_are_appended_and_read_in_order(store: Store) -> None:
    await store.commit([transition("e1", events=b"[1]"), transition("e2", events=b"[9]")])
    await store.commit([transition("e1", 1, events=b"[2]"), transition("e2", 1)])
    events = await store.read_events("e1")
    assert [e.body for e in events] == [b"[1]", b"[2]"]
    assert all(e.execution_id == "e1" for e in events)
    assert [e.version for e in events] == [1, 2]
    assert [e.body for e in await store.read_events("e1", after=events[0].version)] == [b"[2]"]
    assert len(await store.read_events("e1", limit=1)) == 1
    assert await store.read_events("missing") == []


# ------------------------------------------------------------------ queries


async def test_executions_are_listed_newest_first_with_filters_and_cursor(store: Store) -> None:
    await store.commit(
        [
            transition(
                f"e{n}", workflow="a" if n % 2 else "b", status="completed" if n < 3 else "running"
            )
            for n in range(7)
        ]
    )
    await store.commit([transition("child", parent_id="e1")])
    page = await store.list_executions(limit=3)
    assert [r.id for r in page.items] == ["child", "e6", "e5"]
    assert page.next_cursor is not None
    page = await store.list_executions(limit=3, cursor=page.next_cursor)
    assert [r.id for r in page.items] == ["e4", "e3", "e2"]
    page = await store.list_executions(limit=3, cursor=page.next_cursor)
    assert [r.id for r in page.items] == ["e1", "e0"]
    assert page.next_cursor is None
    only_a = await store.list_executions(workflow="a", limit=10)
    assert [r.id for r in only_a.items] == ["e5", "e3", "e1"]
    done_b = await store.list_executions(workflow="b", status="completed")
    assert [r.id for r in done_b.items] == ["e2", "e0"]
    children = await store.list_executions(parent_id="e1")
    assert [r.id for r in children.items] == ["child"]
    record = children.items[0]
    assert (record.workflow, record.workflow_version, record.status) == ("wf", "1.0.0", "running")
    assert (record.created_at, record.updated_at, record.version) == (10.0, 11.0, 1)
    assert record.state == b"{}"
    exact = await store.list_executions(workflow="a", limit=3)
    assert exact.next_cursor is None


async def test_created_at_is_kept_and_updated_at_moves(store: Store) -> None:
    await store.commit([transition("e1")])
    update = transition("e1", 1)
    update.created_at, update.updated_at = 99.0, 50.0
    await store.commit([update])
    record = (await store.list_executions()).items[0]
    assert (record.created_at, record.updated_at) == (10.0, 50.0)
    (same,) = (await store.list_executions(status="running")).items  # status kept
    assert same.version == 2
    await store.commit([transition("e1", 2, status="paused")])
    assert (await store.list_executions(status="running")).items == []
    assert [r.version for r in (await store.list_executions(status="paused")).items] == [3]


async def test_non_terminal_executions_are_the_live_ones_oldest_first(store: Store) -> None:
    statuses = ["running", "completed", "paused", "failed", "pending", "cancelled", "timed_out"]
    await store.commit([transition(f"e{n}", status=s) for n, s in enumerate(statuses)])
    assert await store.non_terminal_executions() == ["e0", "e2", "e4"]
    await store.commit([transition("e0", 1, status="completed")])
    assert await store.non_terminal_executions() == ["e2", "e4"]


async def test_a_commit_with_nothing_to_do_is_fine(store: Store) -> None:
    result = await store.commit([])
    assert result.conflicts == set()
    assert result.outbox == []
    await store.delete_outbox([])
    await store.delete_outbox([12345])


# ------------------------------------------------------------------ API keys


def api_key(key_id: str, key_hash: str, role: str = "viewer", at: float = 1.0) -> ApiKeyRecord:
    return ApiKeyRecord(id=key_id, key_hash=key_hash, role=role, created_at=at, name="ci")


async def test_an_api_key_is_found_by_its_hash(store: Store) -> None:
    await store.save_api_key(api_key("k1", "h1", "admin"))
    found = await store.find_api_key("h1")
    assert found == api_key("k1", "h1", "admin")
    assert found is not None
    assert not found.revoked
    assert await store.find_api_key("h2") is None


async def test_api_key_ids_and_hashes_are_unique(store: Store) -> None:
    await store.save_api_key(api_key("k1", "h1"))
    with pytest.raises(ConflictError):
        await store.save_api_key(api_key("k1", "h2"))
    with pytest.raises(ConflictError):
        await store.save_api_key(api_key("k2", "h1"))
    assert [k.id for k in await store.list_api_keys()] == ["k1"]


async def test_api_keys_are_listed_oldest_first_revoked_ones_included(store: Store) -> None:
    await store.save_api_key(api_key("k2", "h2", "operator", at=2.0))
    await store.save_api_key(api_key("k1", "h1", "admin", at=1.0))
    assert await store.revoke_api_key("k2", 5.0) is True
    assert await store.revoke_api_key("k2", 6.0) is False  # already revoked: first time kept
    assert await store.revoke_api_key("nope", 6.0) is False
    listed = await store.list_api_keys()
    assert [(k.id, k.role, k.revoked_at) for k in listed] == [
        ("k1", "admin", None),
        ("k2", "operator", 5.0),
    ]
    revoked = await store.find_api_key("h2")
    assert revoked is not None
    assert revoked.revoked


# ------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "asyncpg", "postgresql"),
        ("redis://127.0.0.1:6379/0", "redis", "redis"),
    ],
)
def test_a_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    for name in ("magicflow.stores.postgresql", "magicflow.stores.redis"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ConfigurationError, match=rf"magicflow\[{extra}\]"):
        store_from_url(url)


def test_an_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported store URL"):
        store_from_url("mongodb://127.0.0.1")


# ------------------------------------------------------------- subscriptions, triggers, schedules


def delivery(delivery_id: str, webhook_id: str = "wh1", **kwargs: object) -> DeliveryRecord:
    values: dict[str, object] = {"created_at": 1.0, "next_attempt": 5.0} | kwargs
    return DeliveryRecord(delivery_id, webhook_id, "execution.completed", b'{"x": 1}', **values)  # type: ignore[arg-type]


async def test_webhooks_are_saved_once_listed_oldest_first_and_deleted(store: Store) -> None:
    first = WebhookRecord("wh1", "http://a/", "s1", ("*",), 2.0)
    second = WebhookRecord("wh2", "http://b/", "s2", ("execution.failed",), 1.0, workflow="wf")
    await store.save_webhook(first)
    await store.save_webhook(second)
    with pytest.raises(ConflictError):
        await store.save_webhook(first)
    assert await store.list_webhooks() == [second, first]
    assert await store.delete_webhook("wh2") is True
    assert await store.delete_webhook("wh2") is False
    assert await store.list_webhooks() == [first]


async def enqueue(store: Store, *records: DeliveryRecord) -> None:
    """Store deliveries as the service does: with the transition whose events they carry."""
    await store.commit([transition(f"x{next(_created)}", deliveries=records)])


_created = itertools.count()


async def test_deliveries_are_deduplicated_by_id_and_claimed_in_order(store: Store) -> None:
    await enqueue(store, delivery("d1", next_attempt=7.0), delivery("d2"))
    await enqueue(store, delivery("d1", next_attempt=1.0), delivery("d3"))  # d1: kept as it was
    assert [d.id for d in await store.claim_due_deliveries(6.0, 1, 30.0)] == ["d2"]
    assert [d.id for d in await store.claim_due_deliveries(6.0, 10, 30.0)] == ["d3"]
    assert await store.claim_due_deliveries(6.5, 10, 30.0) == []  # the others are leased
    assert await store.claim_due_deliveries(7.0, 10, 30.0) == [delivery("d1", next_attempt=7.0)]


async def test_a_claimed_delivery_comes_due_again_when_its_lease_ends(store: Store) -> None:
    await enqueue(store, delivery("d1"), delivery("d2", next_attempt=6.0))
    assert [d.id for d in await store.claim_due_deliveries(6.0, 10, 10.0)] == ["d1", "d2"]
    assert await store.claim_due_deliveries(15.9, 10, 10.0) == []
    again = await store.claim_due_deliveries(16.0, 10, 10.0)
    assert again == [delivery("d1"), delivery("d2", next_attempt=6.0)]  # records unchanged


async def test_a_recorded_attempt_replaces_the_delivery_and_ends_its_lease(store: Store) -> None:
    await enqueue(store, delivery("d1"), delivery("d2", created_at=2.0))
    assert len(await store.claim_due_deliveries(5.0, 10, 100.0)) == 2
    retry = replace(delivery("d1"), attempts=1, next_attempt=9.0, last_status=500)
    await store.record_delivery_attempts([retry])
    assert await store.claim_due_deliveries(8.0, 10, 100.0) == []
    assert await store.claim_due_deliveries(9.0, 10, 100.0) == [retry]
    done = replace(retry, status="delivered", attempts=2, next_attempt=None, last_status=204)
    failed = replace(
        delivery("d2", created_at=2.0), status="failed", attempts=1, last_error="refused"
    )
    await store.record_delivery_attempts([done, failed])
    await store.record_delivery_attempts([])
    assert await store.claim_due_deliveries(1000.0, 10, 1.0) == []
    assert await store.list_deliveries("wh1") == [failed, done]
    assert await store.list_deliveries("wh1", limit=1) == [failed]
    assert await store.list_deliveries("other") == []


async def test_event_streams_are_saved_once_listed_oldest_first_and_deleted(store: Store) -> None:
    first = EventStreamRecord("es1", "events", ("*",), 2.0)
    second = EventStreamRecord(
        "es2", "orders.events", ("execution.failed",), 1.0, workflow="wf", broker="nats://h:4222"
    )
    await store.save_event_stream(first)
    await store.save_event_stream(second)
    with pytest.raises(ConflictError):
        await store.save_event_stream(first)
    assert await store.list_event_streams() == [second, first]
    assert await store.delete_event_stream("es2") is True
    assert await store.delete_event_stream("es2") is False
    assert await store.list_event_streams() == [first]


async def test_triggers_are_saved_once_listed_by_workflow_and_deleted(store: Store) -> None:
    first = TriggerRecord("tr1", "wf", "orders", "message.order.id", 2.0)
    second = TriggerRecord(
        "tr2", "other", "payments", "key", 1.0, "message.payload", "amqp://h/", "1.0.0"
    )
    await store.save_trigger(first)
    await store.save_trigger(second)
    with pytest.raises(ConflictError):
        await store.save_trigger(first)
    assert await store.list_triggers() == [second, first]
    assert await store.list_triggers("wf") == [first]
    assert await store.list_triggers("nope") == []
    assert await store.delete_trigger("tr2") is True
    assert await store.delete_trigger("tr2") is False
    assert await store.list_triggers() == [first]


async def test_schedules_are_saved_once_listed_and_deleted(store: Store) -> None:
    first = ScheduleRecord("s1", "wf", "*/5 * * * *", 300.0, 2.0, b'{"a": 1}', "1.0.0")
    second = ScheduleRecord("s2", "other", "0 * * * *", 3600.0, 1.0, missed="run_once")
    await store.save_schedule(first)
    await store.save_schedule(second)
    with pytest.raises(ConflictError):
        await store.save_schedule(first)
    assert await store.list_schedules() == [second, first]
    assert await store.list_schedules("wf") == [first]
    assert await store.delete_schedule("s2") is True
    assert await store.delete_schedule("s2") is False
    assert await store.list_schedules() == [first]


async def test_a_schedule_advances_only_from_the_next_run_read(store: Store) -> None:
    record = ScheduleRecord("s1", "wf", "*/5 * * * *", 1_700_000_100.25, 1.0)
    await store.save_schedule(record)
    assert await store.advance_schedule("s1", 1_700_000_100.25, 1_700_000_400.5) is True
    assert await store.advance_schedule("s1", 1_700_000_100.25, 1_700_000_700.0) is False
    assert await store.advance_schedule("missing", 0.0, 1.0) is False
    assert await store.list_schedules() == [replace(record, next_run=1_700_000_400.5)]


async def test_deliveries_are_committed_with_their_transition_and_not_without(
    store: Store,
) -> None:
    await enqueue(store, delivery("d0"))
    applied = transition("e1", deliveries=[delivery("d0", next_attempt=1.0), delivery("d1")])
    conflicting = transition("e2", expected=3, deliveries=[delivery("d2")])
    result = await store.commit([applied, conflicting])
    assert result.conflicts == {"e2"}
    claimed = await store.claim_due_deliveries(10.0, 10, 30.0)
    assert claimed == [delivery("d0"), delivery("d1")]  # d0 was stored already: kept as it was
    assert await store.list_deliveries("wh1") == [delivery("d1"), delivery("d0")]
