"""Natural batching: a batch is what arrived while the previous one ran, results go back in order, errors to the
batch's callers only."""

import asyncio

import pytest

from router_deployments.batching import NaturalBatcher


class Recorder:
    """A batch handler that remembers each batch and takes `seconds` per batch."""

    def __init__(self, seconds: float = 0.01, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.seconds, self.fail_on = seconds, fail_on

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        await asyncio.sleep(self.seconds)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item.upper() for item in items]


def test_what_arrives_while_a_batch_runs_is_the_next_batch():
    handler = Recorder()
    batcher = NaturalBatcher(handler, max_batch_size=32)

    async def main():
        first = asyncio.create_task(batcher.submit("a"))
        await asyncio.sleep(0.001)  # "a" runs alone: it came alone
        rest = [asyncio.create_task(batcher.submit(x)) for x in "bcdef"]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == ["A", "B", "C", "D", "E", "F"]
    assert handler.batches == [["a"], ["b", "c", "d", "e", "f"]]
    assert (batcher.batches, batcher.mean_batch_size) == (2, 3.0)


def test_batches_are_at_most_max_batch_size():
    handler = Recorder()
    batcher = NaturalBatcher(handler, max_batch_size=2)

    async def main():
        return await asyncio.gather(*(batcher.submit(x) for x in "abcde"))

    assert asyncio.run(main()) == list("ABCDE")
    assert [len(b) for b in handler.batches] == [2, 2, 1]


def test_wait_lets_a_batch_fill():
    handler = Recorder(seconds=0)
    batcher = NaturalBatcher(handler, max_batch_size=8, wait_s=0.05)

    async def main():
        first = asyncio.create_task(batcher.submit("a"))
        await asyncio.sleep(0.005)
        return await asyncio.gather(first, batcher.submit("b"))

    assert asyncio.run(main()) == ["A", "B"] and handler.batches == [["a", "b"]]


def test_an_error_reaches_the_callers_of_its_batch_and_the_next_batch_runs():
    handler = Recorder(fail_on="b")
    batcher = NaturalBatcher(handler, max_batch_size=2)

    async def main():
        return await asyncio.gather(*(batcher.submit(x) for x in "abc"), return_exceptions=True)

    a, b, c = asyncio.run(main())
    assert isinstance(a, ValueError) and isinstance(b, ValueError) and "bad item b" in str(a)
    assert c == "C"


def test_a_handler_that_loses_results_is_an_error_not_a_hang():
    async def short(items):
        return items[:-1]

    batcher = NaturalBatcher(short, max_batch_size=4)

    async def main():
        return await asyncio.gather(*(batcher.submit(x) for x in "ab"), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in asyncio.run(main()))


def test_it_restarts_on_a_new_event_loop():
    """Each test (and each replica) runs its own loop; the worker starts on the loop of the first call."""
    batcher = NaturalBatcher(Recorder(seconds=0), max_batch_size=4)
    assert asyncio.run(batcher.submit("x")) == "X"
    assert asyncio.run(batcher.submit("y")) == "Y"


def test_max_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        NaturalBatcher(Recorder(), max_batch_size=0)
