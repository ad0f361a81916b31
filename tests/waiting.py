"""Waiting, in tests, for what a real server does in its own time."""
import time


def wait_until(condition, seconds: float = 30, interval: float = 0.1, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(interval)
