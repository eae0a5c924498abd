"""Hypothesis over every request topic of every service, over a real bus to live services.

The scheduler's apps API (an instance here, leading), the registry's queries and workload
relay (an instance here, on SQLite) and a node agent's commands (a child process) share one
Mosquitto. Each example sends one hostile request (random JSON, a valid request with one field
made wrong: a wrong type, a huge string, NUL and control characters, wildcards and slashes in
ids, deep nesting; bytes that are no JSON at all) with a ``reply_to`` of the fuzzer's own, and
must be answered there: an ``ErrorReply`` or a reply with ``ok``. After each run every service
answers a plain request again and the agent is alive.

``FOGMESH_FUZZ_EXAMPLES`` sets the examples per test (default 25, so the file runs in well
under a minute here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.cli.queries import stream_reply_topic
from fogmesh.protocol import (
    AppListReply,
    ErrorReply,
    ListApps,
    ListWorkloads,
    NodeVerb,
    ReportCommand,
    ReportReply,
    WorkloadListReply,
    new_id,
    topics,
)
from fogmesh.protocol.apps import AppAction
from fogmesh.protocol.workload_api import WorkloadAction
from fogmesh.scheduler import SchedulerService
from tests.scheduler.harness import running, scheduler_config
from tests.security.workload_fleet import Fleet, fleet_running
from tests.support.buses import bus_config

EXAMPLES = int(os.environ.get("FOGMESH_FUZZ_EXAMPLES", "25"))
ANSWER_S = 30.0
"""How long one request may take to be answered (generous: the machine is loaded)."""
TENANT = "fz"

# -- what every service serves, with a request of each that would be valid ----------------
MANIFEST = {"name": "app", "components": [{"name": "c", "image": "busybox", "replicas": 1}]}
SCHEDULER: dict[str, dict[str, Any]] = {
    AppAction.DEPLOY: {"manifest": MANIFEST},
    AppAction.UPDATE: {"manifest": MANIFEST},
    AppAction.SCALE: {"app": "app", "component": "c", "replicas": 2},
    AppAction.DELETE: {"app": "app"},
    AppAction.LIST: {},
    AppAction.GET: {"app": "app"},
    "move": {"app": "app", "workload": "app-c-0"},
    "nonsense": {},
}
REGISTRY: dict[str, dict[str, dict[str, Any]]] = {
    "nodes": {"list": {"limit": 10}, "get": {"node": "n1"}},
    "workloads": {
        WorkloadAction.LIST: {"app": "app"},
        WorkloadAction.LOGS: {"workload": "web", "tail": 5},
        WorkloadAction.STOP: {"workload": "web"},
        WorkloadAction.START: {"workload": "web"},
        WorkloadAction.RESTART: {"workload": "web"},
        WorkloadAction.UPLOAD: {"workload": "web", "path": "/f", "content_b64": "aGk="},
        WorkloadAction.DOWNLOAD: {"workload": "web", "path": "/f"},
        "nonsense": {},
    },
    "events": {"list": {"limit": 5}},
    "registry-apps": {"list": {}, "get": {"app": "app"}},
}
_HANDOVER = {"workload": "web", "snapshot": "s1", "size": 2, "sha256_total": "0" * 64,
             "token": "ab" * 16}  # fmt: skip
AGENT: dict[str, dict[str, Any]] = {
    NodeVerb.LOGS: {"workload": "web", "tail": 5},
    NodeVerb.UPLOAD: {"workload": "web", "path": "/f", "content_b64": "aGk="},
    NodeVerb.DOWNLOAD: {"workload": "web", "path": "/f"},
    NodeVerb.RESTART: {"workload": "web"},
    NodeVerb.STOP: {"workload": "web"},
    NodeVerb.START: {"workload": "web"},
    NodeVerb.REPORT: {},
    NodeVerb.RESOURCE_REQUEST: {"workload": "web", "runtime": "native", "cpu": 0.1},
    NodeVerb.FREEZE: {"workload": "web"},
    NodeVerb.STATE_CHUNK: {"snapshot": "s1", "offset": 0, "length": 10},
    NodeVerb.STATE_PUT: {"workload": "web", "snapshot": "s1", "offset": 0, "size": 2},
    NodeVerb.THAW: {"workload": "web"},
    NodeVerb.STATE_RECEIVE: {**_HANDOVER, "from_node": "n2"},
    NodeVerb.STATE_SEND: {**_HANDOVER, "to": "n2"},
    NodeVerb.STATE_DROP: {"workload": "web"},
    "nonsense": {},
}

# -- hostile values -------------------------------------------------------------------------
IDS = st.sampled_from(["+", "#", "a/b", "fm/v1/nodes/+/desired", "", " ", "..", "a" * 5000])
CONTROL = st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=20).map(
    lambda s: f"x{s}\x00y"
)
HUGE = st.sampled_from([10_000, 100_000, 250_000]).map(lambda n: "h" * n)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
HOSTILE = (
    IDS
    | CONTROL
    | HUGE
    | JSON
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([1e308, -1e308, True, [], {}, [[[[[]]]]]])
)


def _targets(node: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(topics.api(TENANT, "apps", a), body) for a, body in SCHEDULER.items()]
    for resource, actions in REGISTRY.items():
        out += [(topics.api(TENANT, resource, a), body) for a, body in actions.items()]
    out += [(topics.node_cmd(node, v), body) for v, body in AGENT.items()]
    return out


class Fuzzer:
    """The live services in a loop of their own (a thread), and a bus to send from."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.ready: Future[None] = Future()
        self.stop = asyncio.Event()
        self.fleet: Fleet | None = None
        self.scheduler: SchedulerService | None = None
        self.bus: Bus | None = None
        self.reply_to = ""
        self.answers: dict[str, dict[str, Any]] = {}
        self.thread = threading.Thread(target=self._main, name="fuzz-fleet", daemon=True)

    def _main(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        try:
            async with self._services():
                self.ready.set_result(None)
                await self.stop.wait()
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    @contextlib.asynccontextmanager
    async def _services(self) -> AsyncIterator[None]:
        async with fleet_running(self.tmp_path) as fleet:
            self.fleet = fleet
            scheduler = SchedulerService(
                scheduler_config(fleet.broker.port, self.tmp_path / "sched", client_id="fz-sched")
            )
            self.scheduler = scheduler
            client = f"{TENANT}-fuzzer"
            async with (
                running(scheduler),
                Bus(bus_config(fleet.broker, client, username=TENANT)) as bus,
            ):
                await bus.wait_connected(timeout=20)
                self.bus = bus
                self.reply_to = stream_reply_topic(bus, topics.api(TENANT, "apps", "list"))
                bus.subscribe(self.reply_to, RawMessage, self._on_answer)
                async with asyncio.timeout(60):
                    await scheduler.ready.wait()
                    while not fleet.actuals:  # the agent is up and subscribed
                        await asyncio.sleep(0.05)
                await self._serving()
                yield

    async def _on_answer(self, raw: RawMessage, _ctx: MessageContext) -> None:
        data = json.loads(raw.payload)
        if isinstance(data, dict) and isinstance(data.get("correlation_id"), str):
            self.answers[data["correlation_id"]] = data

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        """Run ``coro`` in the services' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def send(self, topic: str, payload: bytes, correlation_id: str) -> dict[str, Any]:
        """Publish ``payload`` and wait for the answer to ``correlation_id``."""
        assert self.bus is not None
        await self.bus.publish_raw(topic, payload, qos=1)
        async with asyncio.timeout(ANSWER_S):
            while correlation_id not in self.answers:
                await asyncio.sleep(0.01)
        return self.answers.pop(correlation_id)

    async def _serving(self) -> None:
        """Every service answers a plain request; the agent process lives."""
        assert self.bus is not None
        assert self.fleet is not None
        bus, fleet = self.bus, self.fleet
        await bus.request(topics.api(TENANT, "apps", "list"), ListApps(), AppListReply, timeout=30)
        await bus.request(
            topics.api(TENANT, "workloads", "list"), ListWorkloads(), WorkloadListReply, timeout=30
        )
        report = await bus.request(
            topics.node_cmd(fleet.node, NodeVerb.REPORT),
            ReportCommand(tenant=TENANT),
            ReportReply,
            timeout=30,
        )
        assert report.node == fleet.node
        assert fleet.agent.alive()

    def check_answer(self, topic: str, payload: bytes, correlation_id: str) -> None:
        """Send and check: an ``ErrorReply``, or a reply with ``ok``, for our correlation id."""
        answer = self.run(self.send(topic, payload, correlation_id))
        assert answer["correlation_id"] == correlation_id
        if answer.get("ok") is not True:
            ErrorReply.model_validate(answer)

    def check_serving(self) -> None:
        """Every service still answers."""
        self.run(self._serving())


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    """The live services, for every test of this module."""
    fz = Fuzzer(tmp_path_factory.mktemp("fuzz"))
    fz.thread.start()
    fz.ready.result(timeout=180)
    yield fz
    fz.loop.call_soon_threadsafe(fz.stop.set)
    fz.thread.join(timeout=120)


def _fuzz(test: Any) -> Any:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )(test)


def _envelope(fz: Fuzzer, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    correlation_id = new_id()
    return {
        **body,
        "id": new_id(),
        "correlation_id": correlation_id,
        "reply_to": fz.reply_to,
    }, correlation_id


def test_random_json_is_answered(fuzzer: Fuzzer) -> None:
    """Any JSON object on any request topic: an answer on its reply_to."""
    assert fuzzer.fleet is not None
    targets = _targets(fuzzer.fleet.node)

    @_fuzz
    @given(
        target=st.sampled_from(targets),
        body=st.dictionaries(st.text(max_size=20), JSON, max_size=8),
    )
    def run(target: tuple[str, dict[str, Any]], body: dict[str, Any]) -> None:
        message, cid = _envelope(fuzzer, body)
        fuzzer.check_answer(target[0], json.dumps(message).encode(), cid)

    run()
    fuzzer.check_serving()


def test_requests_with_one_field_made_hostile_are_answered(fuzzer: Fuzzer) -> None:
    """A valid request with one field (its own, or tenant, source, ts) made wrong."""
    assert fuzzer.fleet is not None
    targets = _targets(fuzzer.fleet.node)

    @_fuzz
    @given(target=st.sampled_from(targets), data=st.data())
    def run(target: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
        topic, body = target
        body = {**body, "tenant": TENANT}
        field = data.draw(st.sampled_from([*body, "tenant", "source", "ts", "schema_version"]))
        path = (
            data.draw(st.sampled_from(["whole", "nested"]))
            if isinstance(body.get(field), dict)
            else "whole"
        )
        value = data.draw(HOSTILE)
        if path == "nested":
            inner = dict(body[field])
            key = data.draw(st.sampled_from([*inner, "extra"]))
            inner[key] = value
            body[field] = inner
        else:
            body[field] = value
        message, cid = _envelope(fuzzer, body)
        fuzzer.check_answer(topic, json.dumps(message).encode(), cid)

    run()
    fuzzer.check_serving()


def test_bytes_that_are_no_request_are_answered(fuzzer: Fuzzer) -> None:
    """Nesting too deep for the parser, text that is no JSON, invalid UTF-8, a payload over the
    size limit: answered wherever the reply_to can be found in it."""
    assert fuzzer.fleet is not None
    targets = _targets(fuzzer.fleet.node)

    @_fuzz
    @given(
        target=st.sampled_from(targets),
        kind=st.sampled_from(["deep", "garbage", "utf8", "oversized", "array"]),
        depth=st.integers(min_value=200, max_value=50_000),
    )
    def run(target: tuple[str, dict[str, Any]], kind: str, depth: int) -> None:
        cid = new_id()
        head = f'{{"id": "{new_id()}", "correlation_id": "{cid}", "reply_to": "{fuzzer.reply_to}"'
        tail = {
            "deep": ', "x": ' + "[" * depth + "]" * depth + "}",
            "garbage": ", this is not json" + "}" * (depth % 7),
            "utf8": ', "x": "\udcff"}',
            "oversized": ', "x": "' + "o" * (300 * 1024 + depth) + '"}',
            "array": ', "x": ' + '{"a":' * depth + "1" + "}" * depth + "}",
        }[kind]
        payload = (head + tail).encode("utf-8", "surrogateescape")
        if kind == "utf8":
            payload = payload.replace(b"\\udcff", b"\xff\xfe")
        fuzzer.check_answer(target[0], payload, cid)

    run()
    fuzzer.check_serving()
