"""Tasks that run their first step at once, on every Python wsguard supports.

A session answers its queued messages in a task. Started the usual way, the task's first step
waits for the next event loop pass, and on an idle server that pass is most of a reply's
latency. Started eagerly, an op that does not wait (most rpc calls, every refusal) is answered
inside the read that brought it, and only an op that waits costs a loop pass.

Python 3.12 has this built in (``asyncio.Task(..., eager_start=True)``). On Python 3.11,
``start_eagerly`` creates the task, runs the coroutine's first step at once *as that task*
(``asyncio.current_task()`` is the task, so ``asyncio.timeout`` and libraries that look up the
current task behave as in any later step), in the task's own context, and hands the task what
the step stopped on; the task goes on from there. Cancelling the task before its first
scheduled step reaches the coroutine where it waits, as with ``eager_start``. Inside another
running task, 3.11 cannot step a second task, so the task starts on the next pass instead.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, Final, NoReturn, TypeVar

__all__ = ["start_eagerly"]

T = TypeVar("T")

if sys.version_info >= (3, 12):

    def start_eagerly(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
        """Run ``coro`` as a task whose first step runs now; ``None`` when that step finished it
        (its result or exception is dropped, as a task nobody awaits drops it)."""
        task = asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
        if not task.done():
            return task
        # A step that raised left this frame in the traceback (as the coroutine's caller): its
        # locals must not hold the task, or task and exception wait for the collector.
        del task
        return None

else:  # Python 3.11
    # asyncio's own bookkeeping of the current task (what Task.__step uses): there is no public
    # way to run a step as a given task before 3.12.
    from asyncio.tasks import _enter_task, _leave_task

    _YIELDED: Final = 0  # the first step stopped on a future (or a bare yield)
    _RETURNED: Final = 1
    _RAISED: Final = 2

    class _Rest(collections.abc.Coroutine):  # type: ignore[type-arg]
        """What the task drives: the first step's outcome, then the coroutine itself."""

        __slots__ = ("_coro", "_first")

        def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
            self._coro = coro
            self._first: tuple[int, Any] | None = None

        def send(self, value: Any) -> Any:
            first = self._first
            if first is None:
                return self._coro.send(value)
            self._first = None
            kind, outcome = first
            del first
            if kind == _YIELDED:
                return outcome  # the task waits on it as the coroutine asked
            if kind == _RETURNED:
                raise StopIteration(outcome)
            try:
                raise outcome
            finally:
                del outcome  # this frame keeps no reference to its own exception (no cycle)

        def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
            first, self._first = self._first, None
            if first is not None:
                kind, outcome = first
                if kind != _YIELDED:
                    raise typ if val is None else val  # it finished already: nothing to reach
                if isinstance(outcome, asyncio.Future):
                    # Cancelled before the task waited on it: cancel what the coroutine waits
                    # on, as Task.cancel() cancels the future a task waits on.
                    outcome.cancel()
            if val is None and tb is None:
                return self._coro.throw(typ)
            return self._coro.throw(typ, val, tb)  # pragma: no cover (asyncio passes one)

        def close(self) -> None:
            self._first = None
            self._coro.close()

        def __await__(self) -> NoReturn:
            raise TypeError("driven by its task only")

    def start_eagerly(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
        """Run ``coro`` as a task whose first step runs now; ``None`` when that step finished it
        (its result or exception is left in a task nobody awaits, as 3.12 leaves it)."""
        loop = asyncio.get_running_loop()
        if asyncio.current_task(loop) is not None:
            return loop.create_task(coro)
        rest = _Rest(coro)
        context = contextvars.copy_context()
        task: asyncio.Task[T] = loop.create_task(rest, context=context)
        _enter_task(loop, task)
        try:
            rest._first = (_YIELDED, context.run(coro.send, None))
            return task
        except StopIteration as stop:
            rest._first = (_RETURNED, stop.value)
        except (KeyboardInterrupt, SystemExit) as exc:
            rest._first = (_RAISED, exc)
            raise
        except BaseException as exc:  # stored in the task, as a task's step stores it
            # Without this frame in its traceback (and no traceback left in its locals): the
            # frame holds the task, which would hold the exception, a cycle only the collector
            # frees; a failed task would then be reported late, from inside a collection.
            tb = exc.__traceback__
            rest._first = (_RAISED, exc.with_traceback(tb.tb_next if tb is not None else None))
            del tb
        finally:
            _leave_task(loop, task)
        return None
