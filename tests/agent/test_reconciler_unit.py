"""The agent's reconcile rules, one per test, without a broker or an engine.

``FakeRuntime`` implements the :class:`~fogmesh.agent.runtime.base.Runtime` Protocol in memory.
It is a fake because the rule is under test here, not the runtime: the real Docker and native
runtimes have their own tests (tests/agent_runtime) against a real dockerd and real processes.
The desired state lives in a real :class:`~fogmesh.agent.store.DesiredStore` on a temp dir.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.runtime.base import (
    InstanceState,
    InstanceStatus,
    Runtime,
    Usage,
    workload_key,
    workload_labels,
)
from fogmesh.agent.runtime.errors import InstanceNotFound, PrepareFailed, RuntimeUnavailable
from fogmesh.agent.store import DesiredStore
from fogmesh.protocol import (
    DesiredState,
    Event,
    EventKind,
    ReplacedData,
    RestartPolicy,
    RuntimeKind,
    WorkloadPhase,
    WorkloadSpec,
)

P = WorkloadPhase
NODE = "n1"


class FakeRuntime:
    """Instances in a dict, every call in ``calls``; ``fail[verb]`` makes that verb raise."""

    def __init__(self, kind: RuntimeKind = RuntimeKind.DOCKER) -> None:
        self._kind = kind
        self.instances: dict[str, InstanceStatus] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, Exception] = {}
        self.specs: dict[str, WorkloadSpec] = {}

    @property
    def kind(self) -> RuntimeKind:
        return self._kind

    def _call(self, verb: str, key: str) -> None:
        self.calls.append((verb, key))
        if verb in self.fail:
            raise self.fail[verb]

    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.calls if verb != "list"]

    def exit(self, key: str, code: int) -> None:
        """The instance's process ends by itself."""
        self.instances[key] = replace(
            self.instances[key], state=InstanceState.EXITED, exit_code=code
        )

    async def prepare(self, spec: WorkloadSpec) -> None:
        self._call("prepare", workload_key(spec.tenant, spec.name))

    async def create(self, spec: WorkloadSpec) -> InstanceStatus:
        key = workload_key(spec.tenant, spec.name)
        self._call("create", key)
        self.specs[key] = spec
        self.instances[key] = InstanceStatus(
            key, InstanceState.CREATED, self._kind, spec_hash=spec.spec_hash(),
            labels=workload_labels(spec, NODE),
        )  # fmt: skip
        return self.instances[key]

    async def start(self, key: str) -> InstanceStatus:
        self._call("start", key)
        inst = self.instances[key]
        self.instances[key] = replace(inst, state=InstanceState.RUNNING, runtime_id=f"id-{key}")
        return self.instances[key]

    async def stop(self, key: str, timeout: float = 10.0) -> InstanceStatus:
        self._call("stop", key)
        self.instances[key] = replace(self.instances[key], state=InstanceState.EXITED, exit_code=0)
        return self.instances[key]

    async def remove(self, key: str, *, keep_state: bool = False) -> None:
        self._call("remove+state" if keep_state else "remove", key)
        self.instances.pop(key, None)

    async def status(self, key: str) -> InstanceStatus:
        return self.instances.get(key) or InstanceStatus(key, InstanceState.ABSENT, self._kind)

    async def list_instances(self) -> list[InstanceStatus]:
        self._call("list", "")
        return list(self.instances.values())

    async def logs(self, key: str, tail: int = 100, since: float | None = None) -> list[str]:
        return []

    async def put_file(self, key: str, path: str, data: bytes, mode: int = 0o644) -> None:
        raise InstanceNotFound(key)

    async def get_file(self, key: str, path: str, limit: int) -> bytes:
        return b""

    async def snapshot(self, key: str) -> bytes:
        return b""

    async def restore(self, spec: WorkloadSpec, snapshot: bytes) -> InstanceStatus:
        return await self.create(spec)

    async def usage(self, key: str) -> Usage:
        return Usage()

    async def close(self) -> None:
        pass


def spec(name: str = "web-0", **over: object) -> WorkloadSpec:
    fields: dict[str, object] = {
        "name": name, "tenant": "acme", "app": "shop", "component": "web",
        "runtime": "docker", "image": "nginx",
    }  # fmt: skip
    return WorkloadSpec.model_validate({**fields, **over})


class Agent:
    """A reconciler on a fake runtime, with the events it emits."""

    def __init__(self, tmp_path: Path, runtime: FakeRuntime | None = None) -> None:
        self.runtime = runtime or FakeRuntime()
        engine: Runtime = self.runtime  # the fake meets the whole Protocol
        self.store = DesiredStore(tmp_path, NODE)
        self.events: list[Event] = []
        self.r = Reconciler(
            NODE, self.store, {engine.kind: engine}, retry_base=60, retry_cap=60,
            emit=lambda _tenant, event: self.events.append(event),
        )  # fmt: skip

    def want(self, *specs: WorkloadSpec) -> None:
        gen = self.store.generation + 1
        assert self.store.accept(DesiredState(node=NODE, generation=gen, workloads=list(specs)))

    def phase(self, name: str = "web-0") -> tuple[WorkloadPhase, str]:
        tracked = self.r.tracked[workload_key("acme", name)]
        return tracked.machine.phase, tracked.machine.reason


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent(tmp_path)


KEY = workload_key("acme", "web-0")


async def test_a_desired_workload_is_prepared_created_and_started(agent: Agent) -> None:
    agent.want(spec())
    await agent.r.reconcile_once()
    assert agent.runtime.verbs() == ["prepare", "create", "start"]
    assert agent.phase() == (P.RUNNING, "")
    assert agent.r.overall() == "converged"
    assert [e.data["to"] for e in agent.events if e.kind is EventKind.WORKLOAD_STATE][
        -1
    ] == "running"


async def test_a_running_instance_with_the_same_spec_is_adopted(agent: Agent) -> None:
    s = spec()
    agent.runtime.instances[KEY] = InstanceStatus(
        KEY, InstanceState.RUNNING, RuntimeKind.DOCKER, spec_hash=s.spec_hash()
    )
    agent.want(s)
    await agent.r.reconcile_once()
    assert agent.runtime.verbs() == []  # no duplicate after an agent restart
    assert agent.phase() == (P.RUNNING, "adopted: already running")


async def test_a_workload_no_longer_desired_is_stopped_and_removed(agent: Agent) -> None:
    agent.want(spec())
    await agent.r.reconcile_once()
    agent.want()
    await agent.r.reconcile_once()
    assert agent.runtime.verbs()[-2:] == ["stop", "remove"]
    assert agent.runtime.instances == {}
    assert agent.r.tracked == {}


async def test_a_crash_restarts_at_once_the_first_time(agent: Agent) -> None:
    agent.want(spec())
    await agent.r.reconcile_once()
    agent.runtime.exit(KEY, 1)
    await agent.r.reconcile_once()
    assert agent.runtime.verbs()[-1] == "start"
    assert agent.r.tracked[KEY].restarts == 1
    agent.runtime.exit(KEY, 1)
    await agent.r.reconcile_once()  # the second crash waits out the back-off (60 s here)
    assert agent.phase()[0] is P.FAILED
    assert agent.r.tracked[KEY].restarts == 1


@pytest.mark.parametrize(
    ("policy", "code", "restarted"),
    [
        (RestartPolicy.NEVER, 1, False),
        (RestartPolicy.ON_FAILURE, 0, False),
        (RestartPolicy.ON_FAILURE, 1, True),
        (RestartPolicy.ALWAYS, 0, True),
    ],
)
async def test_the_restart_policy_decides_after_an_exit(
    agent: Agent, policy: RestartPolicy, code: int, restarted: bool
) -> None:
    agent.want(spec(restart_policy=policy))
    await agent.r.reconcile_once()
    agent.runtime.exit(KEY, code)
    await agent.r.reconcile_once()
    assert (agent.runtime.verbs().count("start") == 2) is restarted


async def test_a_new_spec_replaces_the_instance_and_keeps_its_state(agent: Agent) -> None:
    agent.want(spec(image="nginx:1"))
    await agent.r.reconcile_once()
    old_hash = agent.runtime.instances[KEY].spec_hash
    agent.want(spec(image="nginx:2"))
    await agent.r.reconcile_once()
    assert agent.runtime.verbs()[3:] == ["stop", "remove+state", "prepare", "create", "start"]
    [replaced] = [e for e in agent.events if e.kind is EventKind.REPLACED]
    assert replaced.payload_as(ReplacedData).old_spec_hash == old_hash


async def test_an_instance_of_another_app_never_hands_over_its_state(agent: Agent) -> None:
    agent.want(spec(app="blog", image="nginx:1"))
    await agent.r.reconcile_once()
    agent.want(spec(image="nginx:1"))  # same key (tenant/name), now app shop
    await agent.r.reconcile_once()
    assert "remove" in agent.runtime.verbs()
    assert "remove+state" not in agent.runtime.verbs()


async def test_an_instance_nobody_wants_is_removed(agent: Agent) -> None:
    stray = workload_key("acme", "old-0")
    agent.runtime.instances[stray] = InstanceStatus(
        stray, InstanceState.RUNNING, RuntimeKind.DOCKER
    )
    agent.want()
    await agent.r.reconcile_once()
    assert agent.runtime.calls[-2:] == [("stop", stray), ("remove", stray)]


async def test_a_runtime_failure_fails_the_workload_and_backs_off(agent: Agent) -> None:
    agent.runtime.fail["prepare"] = PrepareFailed("pull failed: no such image")
    agent.want(spec())
    await agent.r.reconcile_once()
    assert agent.phase() == (P.FAILED, "pull failed: no such image")
    await agent.r.reconcile_once()
    assert agent.runtime.verbs() == ["prepare"]  # no new try before the back-off ends


async def test_a_runtime_the_agent_lacks_fails_with_the_reason(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agent.r.missing_runtimes[RuntimeKind.NATIVE] = "disabled"
    agent.want(spec(runtime="native", image=None, executable="/bin/true"))
    await agent.r.reconcile_once()
    phase, reason = agent.phase()
    assert phase is P.FAILED
    assert "runtime native is not available here: disabled" in reason


async def test_an_engine_that_cannot_list_keeps_its_workloads(agent: Agent) -> None:
    agent.want(spec())
    await agent.r.reconcile_once()
    agent.runtime.fail["list"] = RuntimeUnavailable("dockerd is down")
    agent.want()  # even no longer desired: nothing is known, so nothing is retired
    await agent.r.reconcile_once()
    assert KEY in agent.r.tracked
    assert "stop" not in agent.runtime.verbs()
