"""run_bounded: an rpc handler awaited in the calling task, within a time limit."""

from __future__ import annotations

import asyncio

import pytest

from wsguard.server.rpc import run_bounded


async def test_a_handler_that_never_waits_runs_without_a_task():
    tasks_before = len(asyncio.all_tasks())
    seen = []

    async def compute() -> int:
        seen.append(len(asyncio.all_tasks()))
        return 42

    assert await run_bounded(compute(), 1.0) == 42
    assert seen == [tasks_before]  # no task was created to run it


async def test_a_handler_that_waits_is_finished_in_the_calling_task():
    caller = asyncio.current_task()
    steps = []

    async def wait_twice() -> str:
        steps.append(asyncio.current_task() is caller)
        await asyncio.sleep(0)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "done")
        value = await fut
        steps.append(asyncio.current_task() is caller)
        return value

    assert await run_bounded(wait_twice(), 1.0) == "done"
    assert steps == [True, True]


async def test_a_handler_past_the_limit_raises_timeout_and_is_cancelled():
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        await run_bounded(forever(), 0.01)
    assert cancelled.is_set()


@pytest.mark.parametrize("wait_first", [False, True])
async def test_exceptions_reach_the_caller_before_and_after_a_wait(wait_first):
    async def fails() -> None:
        if wait_first:
            await asyncio.sleep(0)
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        await run_bounded(fails(), 1.0)


async def test_cancelling_the_caller_cancels_the_handler():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.get_running_loop().create_task(run_bounded(handler(), 10.0))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_an_awaitable_that_is_not_a_coroutine_is_awaited():
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, 7)
    assert await run_bounded(fut, 1.0) == 7
