"""Keys in ``fogmesh up``'s live view: ``k`` then a digit kills that node (``k 2``: edge-2),
``s`` then a digit stops it silently, ``r`` then a digit revives it; the same as
``fogmesh fleet kill/revive`` from another terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Awaitable, Callable, Iterator

from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.control import ControlAction, ControlRequest

__all__ = ["KEYS_HELP", "LiveKeys"]

KEYS_HELP = "keys: k N kill edge-N, s N stop it silently, r N revive it"

_ACTIONS = {
    "k": (ControlAction.KILL, False),
    "s": (ControlAction.KILL, True),
    "r": (ControlAction.REVIVE, False),
}


class LiveKeys:
    """Turns key presses into control requests; ``act`` carries them out and ``note`` shows
    what came of each (a refusal included)."""

    def __init__(
        self,
        act: Callable[[ControlRequest], Awaitable[str]],
        note: Callable[[str], None],
        node_prefix: str = "edge-",
    ) -> None:
        self.act, self.note, self.prefix = act, note, node_prefix
        self._pending: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def feed(self, text: str) -> list[ControlRequest]:
        """The requests ``text`` completes (an action letter, then a node's digit)."""
        done: list[ControlRequest] = []
        for char in text.lower():
            if char in _ACTIONS:
                self._pending = char
            elif char.isdigit() and char != "0" and self._pending is not None:
                action, silent = _ACTIONS[self._pending]
                node = f"{self.prefix}{char}"
                done.append(ControlRequest(action=action, node=node, silent=silent))
                self._pending = None
            else:
                self._pending = None
        return done

    async def _run(self, request: ControlRequest) -> None:
        try:
            await self.act(request)  # the supervisor notes what it did
        except CliError as exc:
            self.note(f"{request.action.value} {request.node}: {exc.message}")

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 64).decode(errors="ignore")
        except OSError:
            return
        for request in self.feed(data):
            task = asyncio.get_running_loop().create_task(self._run(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @contextlib.contextmanager
    def attached(self, fd: int) -> Iterator[bool]:
        """Read keys from terminal ``fd`` (no echo, no line buffering; Ctrl-C still stops the
        fleet) while inside; yields False and reads nothing when ``fd`` is not a terminal."""
        if not os.isatty(fd):
            yield False
            return
        saved = termios.tcgetattr(fd)
        loop = asyncio.get_running_loop()
        tty.setcbreak(fd)
        loop.add_reader(fd, self._readable, fd)
        try:
            yield True
        finally:
            loop.remove_reader(fd)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
