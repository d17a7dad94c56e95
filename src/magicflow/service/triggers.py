"""Event triggers: start an execution of a workflow for each message on a broker queue.

Each service instance runs one consumer per trigger while entered (``async with``): they are
started and stopped as triggers are created and deleted (through this instance's API at once,
through another instance's within ``poll`` seconds) and on start-up for the stored ones.
Consumers of one queue compete, so the broker gives each message to one instance.

For each message: its JSON is parsed, the idempotency key and the input are taken from it as
the trigger says, and the execution is started with the idempotency key
``trigger:<trigger id>:<key>``; the message is acknowledged only after the start committed. A
message delivered again (the instance died before the ack, a visibility timeout ran out) finds
the execution its key started: exactly one execution per message. A message that can never
start one (not JSON, no key where the trigger looks, an input the workflow's schema refuses, a
workflow that is not registered) goes to the queue's dead-letter queue with the reason; a start
that fails for a passing reason (the store does not answer) is requeued after
``retry_delay``, and dead-lettered once delivered ``max_deliveries`` times. No message is lost,
none is retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from magicflow.brokers import Broker, Delivery
from magicflow.errors import ConflictError, MagicFlowError, StoreError, WorkflowValidationError
from magicflow.service.background import cancel_and_wait
from magicflow.service.broker_pool import BrokerPool, redact
from magicflow.stores.base import TriggerRecord

if TYPE_CHECKING:
    from magicflow.service.engine import Engine

logger = logging.getLogger(__name__)

_decode = msgspec.json.Decoder(Any).decode
# what ``idempotency_key`` and ``input`` of a trigger may say (JSON Schema patterns of the API)
KEY_SELECTION = r"^(key|message(\.[^.]+)*)$"
INPUT_SELECTION = r"^message(\.[^.]+)*$"
_PASSING = (StoreError, ConflictError)  # worth another try: the backend, a racing start


class Refused(Exception):
    """The message cannot start an execution, ever: it goes to the dead-letter queue."""


def select(selection: str, message: Any, key: bytes | None) -> Any:
    """The part of the message ``selection`` names; Refused if it has none."""
    if selection == "key":
        if key is None:
            raise Refused("the message has no key")
        try:
            return key.decode()
        except UnicodeDecodeError:
            return "hex:" + key.hex()
    value = message
    path = "message"
    for name in selection.split(".")[1:]:
        path += "." + name
        if isinstance(value, dict) and name in value:
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            raise Refused(f"the message has no {path}")
    return value


def idempotency_key(record: TriggerRecord, message: Any, key: bytes | None) -> str:
    value = select(record.idempotency_key, message, key)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise Refused(
            f"the idempotency key ({record.idempotency_key}) is not a string or an integer"
        )
    return f"trigger:{record.id}:{value}"


class Triggers:
    """The consumers of every stored trigger while entered; ``refresh`` after changes."""

    def __init__(
        self,
        engine: Engine,
        brokers: BrokerPool,
        *,
        poll: float = 5.0,
        wait: float = 1.0,
        batch: int = 100,
        max_deliveries: int = 10,
        retry_delay: float = 5.0,
    ) -> None:
        self.engine = engine
        self.brokers = brokers
        self.poll = poll
        self.wait = wait
        self.batch = batch
        self.max_deliveries = max_deliveries
        self.retry_delay = retry_delay
        self.listeners: list[Callable[[str, str, int], None]] = []  # (workflow, outcome, n)
        self.errors: dict[str, str] = {}  # trigger id -> why its consumer cannot receive
        # trigger id -> (its record, set to stop it, its task)
        self._consumers: dict[str, tuple[TriggerRecord, asyncio.Event, asyncio.Task[None]]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Triggers:
        self._task = asyncio.create_task(self._refresh_loop(), name="magicflow-triggers")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        async with self._lock:
            await self._stop(list(self._consumers))

    @property
    def running(self) -> list[str]:
        """Ids of the triggers this instance consumes now."""
        return list(self._consumers)

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("triggers: cannot read the triggers; retrying")
            await asyncio.sleep(self.poll)

    async def refresh(self) -> None:
        """Start a consumer for each new trigger, stop those of deleted ones (while entered;
        otherwise nothing)."""
        async with self._lock:
            if self._task is None:
                return
            records = {t.id: t for t in await self.engine.store.list_triggers()}
            await self._stop([i for i in self._consumers if i not in records])
            for trigger_id, record in records.items():
                if trigger_id not in self._consumers:
                    stop = asyncio.Event()
                    task = asyncio.create_task(
                        self._consume(record, stop), name=f"magicflow-trigger-{trigger_id}"
                    )
                    self._consumers[trigger_id] = (record, stop, task)

    async def _stop(self, trigger_ids: Sequence[str]) -> None:
        """Let each consumer finish the batch it handles (at most a few seconds), then end,
        and hand back to the queue what the broker delivered ahead to it."""
        stopping = [self._consumers.pop(i) for i in trigger_ids]
        for trigger_id in trigger_ids:
            self.errors.pop(trigger_id, None)
        for _, stop, _ in stopping:
            stop.set()
        for record, _, task in stopping:
            try:
                await asyncio.wait_for(task, self.wait + 10.0)
            except TimeoutError:
                pass  # wait_for cancelled it
            except Exception:
                logger.exception("triggers: a consumer failed while stopping")
            still = {(r.broker, r.queue) for r, _, _ in self._consumers.values()}
            if (record.broker, record.queue) not in still:
                await self._hand_back(record)

    async def _hand_back(self, record: TriggerRecord) -> None:
        """RabbitMQ pushes messages ahead (a prefetch) to a consumer; one that stops reading
        but stays connected would keep them from every other consumer (``stop_receiving``
        requeues them; brokers whose consumers pull have nothing to hand back)."""
        try:
            broker = await self.brokers.get(record.broker)
            stop_receiving = getattr(broker, "stop_receiving", None)
            if stop_receiving is not None:
                await stop_receiving(record.queue)
        except Exception as exc:
            logger.warning("trigger %s: cannot hand back prefetched messages: %s", record.id, exc)

    # ------------------------------------------------------------------ one consumer

    async def _consume(self, record: TriggerRecord, stop: asyncio.Event) -> None:
        pause = 0.5
        while not stop.is_set():
            try:
                broker = await self.brokers.get(record.broker)
                deliveries = await broker.receive(record.queue, self.batch, self.wait)
            except Exception as exc:
                self.errors[record.id] = f"{type(exc).__name__}: {exc}"
                where = redact(record.broker or "the service's broker")
                logger.warning(
                    "trigger %s: cannot receive from %s on %s: %s; again in %.1f s",
                    record.id,
                    record.queue,
                    where,
                    exc,
                    pause,
                    extra={"trigger_id": record.id, "workflow": record.workflow},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = 0.5
            self.errors.pop(record.id, None)
            if deliveries:
                await self.handle(record, broker, deliveries)

    async def handle(
        self, record: TriggerRecord, broker: Broker, deliveries: Sequence[Delivery]
    ) -> None:
        """Start the executions of a batch of messages (concurrently: one group commit), then
        acknowledge, requeue or dead-letter each."""
        outcomes = await asyncio.gather(*(self._start(record, d) for d in deliveries))
        done = [d for d, outcome in zip(deliveries, outcomes, strict=True) if outcome is None]
        retry: list[Delivery] = []
        refused: dict[str, list[Delivery]] = {}
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, Refused):
                refused.setdefault(str(outcome), []).append(delivery)
            elif outcome is not None and delivery.delivery_count >= self.max_deliveries:
                reason = f"not started after {delivery.delivery_count} deliveries: {outcome}"
                refused.setdefault(reason, []).append(delivery)
            elif outcome is not None:
                retry.append(delivery)
        refused_count = sum(len(group) for group in refused.values())
        self._count(
            record.workflow, started=len(done), dead_lettered=refused_count, retried=len(retry)
        )
        try:
            if done:
                await broker.ack(done)
            for reason, dead in refused.items():
                logger.warning(
                    "trigger %s: %d message(s) to the dead-letter queue of %s: %s",
                    record.id,
                    len(dead),
                    record.queue,
                    reason,
                    extra={"trigger_id": record.id, "workflow": record.workflow},
                )
                await broker.dead_letter(dead, reason)
            if retry:
                await broker.nack(retry, requeue=True, delay=self.retry_delay)
        except MagicFlowError as exc:  # delivered again later: the idempotency key holds
            logger.warning("trigger %s: cannot settle messages: %s", record.id, exc)

    def _count(self, workflow: str, **counts: int) -> None:
        for outcome, count in counts.items():
            if count:
                for listener in self.listeners:
                    listener(workflow, outcome, count)

    async def _start(self, record: TriggerRecord, delivery: Delivery) -> Exception | None:
        """None once the execution is started (or found started); otherwise why not: a
        Refused, or a passing error."""
        try:
            try:
                message = _decode(delivery.body)
            except msgspec.DecodeError as exc:
                raise Refused(f"the message is not JSON: {exc}") from None
            key = idempotency_key(record, message, delivery.key)
            data = select(record.input, message, delivery.key)
            await self.engine.start(
                record.workflow, data, version=record.version, idempotency_key=key
            )
        except (Refused, *_PASSING) as exc:
            return exc
        except WorkflowValidationError as exc:  # the input does not fit the schema
            return Refused("; ".join(f"{d.file}: {d.message}" for d in exc.diagnostics))
        except MagicFlowError as exc:  # an unknown workflow or version ...
            return Refused(str(exc))
        except Exception as exc:
            logger.exception("trigger %s: cannot start an execution", record.id)
            return exc
        return None
