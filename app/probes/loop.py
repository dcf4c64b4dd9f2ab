"""The event loop the engine runs cheapest on.

uvloop where it is installed (not on Windows): per probe it costs markedly less
CPU than asyncio's own loop (bench/probe_engine.py). Everything in the engine
also runs on the stock loop, which is what you get without uvloop::

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        outcome = runner.run(run_probe(spec))
"""

from __future__ import annotations

import asyncio

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows, or installed without it
    uvloop = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
