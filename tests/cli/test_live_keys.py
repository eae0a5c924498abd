"""Keys in the live view, typed into a real pseudo-terminal: ``k 2`` kills edge-2, ``s 1``
stops edge-1 silently, ``r 3`` revives edge-3; a refusal is shown; the terminal is restored."""

from __future__ import annotations

import os
import termios

from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.control import ControlAction, ControlRequest
from fogmesh.cli.fleet.keys import LiveKeys
from tests.support.buses import eventually


async def test_keys_typed_on_the_terminal_become_control_requests() -> None:
    asked: list[ControlRequest] = []
    notes: list[str] = []

    async def act(request: ControlRequest) -> str:
        asked.append(request)
        if request.node == "edge-3":
            raise CliError("edge-3 is running; nothing to revive")
        return "done"

    keys = LiveKeys(act, notes.append)
    typist, terminal = os.openpty()
    try:
        before = termios.tcgetattr(terminal)
        with keys.attached(terminal) as reading:
            assert reading
            os.write(typist, b"k2")
            await eventually(lambda: len(asked) == 1, what="k2 read")
            os.write(typist, b"x1s1q9r3")  # a stray letter or digit starts nothing
            await eventually(lambda: len(asked) == 3 and len(notes) == 1, what="s1, r3 read")
        assert termios.tcgetattr(terminal) == before
    finally:
        os.close(typist)
        os.close(terminal)
    assert asked == [
        ControlRequest(action=ControlAction.KILL, node="edge-2"),
        ControlRequest(action=ControlAction.KILL, node="edge-1", silent=True),
        ControlRequest(action=ControlAction.REVIVE, node="edge-3"),
    ]
    assert notes == ["revive edge-3: edge-3 is running; nothing to revive"]


async def test_no_terminal_no_keys() -> None:
    keys = LiveKeys(lambda _r: _never(), lambda _t: None)
    read, write = os.pipe()
    try:
        with keys.attached(read) as reading:
            assert not reading
    finally:
        os.close(read)
        os.close(write)


async def _never() -> str:
    raise AssertionError("no key was pressed")
