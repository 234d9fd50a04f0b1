"""`make dev-appserver` stops on Ctrl-C or TERM whenever it comes, the minutes
of installing the services' environments included."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest

from deploy import dev_appserver


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_starting_stops_and_cleans_up(monkeypatch, handlers, signum):
    cleaned = []

    @contextlib.contextmanager
    def still_starting(*args, **kwargs):
        try:
            # The staged services are still installing: nothing is yielded yet.
            time.sleep(30)
            yield None
        finally:
            cleaned.append(True)

    monkeypatch.setattr(dev_appserver, "running", still_starting)
    threading.Timer(0.3, os.kill, (os.getpid(), signum)).start()

    began = time.monotonic()
    assert dev_appserver.main(["--port", "18090"]) == 0

    assert time.monotonic() - began < 10
    assert cleaned == [True]
