"""start_eagerly: a task whose first step runs at once, as the task, on Python 3.11 and 3.12+."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from typing import Any

import pytest

from wsguard.server.eager import start_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="caller")


def in_a_callback(fn: Any) -> Any:
    """Run ``fn`` as a loop callback (no current task), as ``data_received`` runs; return what it
    returned, read before any other loop pass."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def callback() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed to the test
            done.set_exception(exc)

    loop.call_soon(callback)
    return done


async def test_a_coroutine_that_never_waits_finishes_before_start_returns():
    steps: list[str] = []

    async def compute() -> None:
        steps.append("ran")

    def start() -> tuple[Any, list[str]]:
        task = start_eagerly(compute())
        return task, list(steps)  # what had happened when start_eagerly returned

    task, seen = await in_a_callback(start)
    assert task is None
    assert seen == ["ran"]


async def test_the_first_step_and_every_later_one_run_as_the_returned_task():
    loop = asyncio.get_running_loop()
    seen: list[asyncio.Task[Any] | None] = []
    release: asyncio.Future[str] = loop.create_future()

    async def waits() -> str:
        seen.append(asyncio.current_task())
        value = await release
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)  # a bare yield: the task steps it again on the next pass
        seen.append(asyncio.current_task())
        return value

    def start() -> tuple[Any, int]:
        task = start_eagerly(waits())
        return task, len(seen)

    task, steps_at_return = await in_a_callback(start)
    assert isinstance(task, asyncio.Task)
    assert steps_at_return == 1
    assert asyncio.current_task() is not task  # the test's own task again
    release.set_result("done")
    assert await task == "done"
    assert seen == [task, task, task]


async def test_asyncio_timeout_works_in_the_first_step():
    async def bounded() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "not reached"

    task = await in_a_callback(lambda: start_eagerly(bounded()))
    assert await task == "timed out"


async def test_cancelling_before_the_tasks_next_step_reaches_the_coroutine_where_it_waits():
    events: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled at its wait")
            raise
        finally:
            events.append("finally")

    def start_and_cancel() -> Any:
        task = start_eagerly(waits())
        assert task is not None
        task.cancel()  # before the loop ran anything of the task
        return task

    task = await in_a_callback(start_and_cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["cancelled at its wait", "finally"]


async def test_cancelling_before_the_tasks_next_step_cancels_what_the_coroutine_waits_on():
    loop = asyncio.get_running_loop()
    awaited: asyncio.Future[None] = loop.create_future()

    async def waits() -> None:
        await awaited

    def start_and_cancel() -> Any:
        task = start_eagerly(waits())
        assert task is not None
        task.cancel()
        return task

    task = await in_a_callback(start_and_cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert awaited.cancelled()  # as when a task that waits on a future is cancelled


async def test_an_exception_in_the_first_step_is_the_tasks_not_the_callers():
    async def fails() -> None:
        raise LookupError("nope")

    task_at_return = await in_a_callback(lambda: start_eagerly(fails()))
    assert task_at_return is None  # finished: start_eagerly itself did not raise


async def test_a_first_step_that_raises_leaves_no_cycle_and_the_error_is_reported():
    # The task holding the exception must not wait for the garbage collector: freed by
    # reference counting, asyncio reports "never retrieved" at once (a cycle left it to a
    # later collection, which on Python 3.11.7 could land inside ast.parse and fail it).
    loop = asyncio.get_running_loop()
    reported: list[tuple[str, object]] = []
    loop.set_exception_handler(lambda _, ctx: reported.append((ctx["message"], ctx["exception"])))

    async def fails() -> None:
        raise LookupError("nope")

    gc.disable()  # reported only if freed by reference counting
    try:
        assert await in_a_callback(lambda: start_eagerly(fails())) is None
        for _ in range(3):
            await asyncio.sleep(0)
        seen = [(message, type(exc)) for message, exc in reported]
    finally:
        gc.enable()
        loop.set_exception_handler(None)
    assert seen == [("Task exception was never retrieved", LookupError)]


async def test_an_exception_after_a_wait_ends_the_task_with_it():
    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise LookupError("later")

    task = await in_a_callback(lambda: start_eagerly(fails_later()))
    with pytest.raises(LookupError, match="later"):
        await task


async def test_context_changes_stay_in_the_task():
    seen: list[str] = []

    async def sets() -> None:
        VAR.set("task")
        await asyncio.sleep(0)
        seen.append(VAR.get())

    task = await in_a_callback(lambda: start_eagerly(sets()))
    assert VAR.get() == "caller"
    await task
    assert seen == ["task"]


async def test_inside_a_running_task_it_still_runs_the_coroutine_to_the_end():
    loop = asyncio.get_running_loop()
    release: asyncio.Future[int] = loop.create_future()

    async def waits() -> int:
        return await release

    task = start_eagerly(waits())  # called from the test's own task
    assert task is not None
    release.set_result(5)
    assert await task == 5
