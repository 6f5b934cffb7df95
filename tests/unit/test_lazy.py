"""`Lazy`: a costly value built once on first use, replaceable, released on close."""

from __future__ import annotations

import asyncio

from vocalis.core.lazy import Lazy


class Engine:
    """Something costly to build, that knows whether it was released."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


def counting_lazy() -> tuple[Lazy[Engine], list[Engine]]:
    built: list[Engine] = []

    async def build() -> Engine:
        await asyncio.sleep(0.01)  # concurrent first users overlap here
        built.append(Engine(len(built) + 1))
        return built[-1]

    async def close(engine: Engine) -> None:
        engine.closed = True

    return Lazy(build, close=close), built


async def test_nothing_is_built_until_first_use() -> None:
    lazy, built = counting_lazy()
    assert lazy.built is None and built == []
    assert (await lazy.get()).number == 1


async def test_concurrent_first_users_share_one_build() -> None:
    lazy, built = counting_lazy()
    engines = await asyncio.gather(*(lazy.get() for _ in range(10)))
    assert len(built) == 1 and all(e is built[0] for e in engines)


async def test_a_value_set_directly_is_used_instead_of_building() -> None:
    lazy, built = counting_lazy()
    given = Engine(99)
    lazy.set(given)
    assert await lazy.get() is given and built == []


async def test_close_releases_the_value_and_the_next_use_builds_afresh() -> None:
    lazy, built = counting_lazy()
    first = await lazy.get()
    await lazy.close()
    assert first.closed and lazy.built is None
    second = await lazy.get()
    assert second is not first and built == [first, second]


async def test_closing_an_unused_slot_does_nothing() -> None:
    lazy, built = counting_lazy()
    await lazy.close()
    assert built == []


async def test_a_slot_made_of_a_value_never_builds() -> None:
    given = Engine(7)
    lazy = Lazy.of(given)
    assert await lazy.get() is given
    await lazy.close()
    assert not given.closed
