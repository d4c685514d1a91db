"""What the heavy system tests need from the machine, and what happens when it is missing.

The browser and distributed tests run by default (``make test``, CI). ``make system-deps``
installs their Debian packages (chromium, postgresql, redis-server). When something is still
missing:

- in CI (``CI`` set to anything but ``0``/``false``/``no``) the test **fails**, so a broken
  install step can never turn into a silently smaller green run;
- elsewhere it is skipped, with the reason and the install command.

Each test module also has an explicit opt-out (``CONVEYOR_SKIP_BROWSER_TESTS=1``,
``CONVEYOR_SKIP_DISTRIBUTED_TESTS=1``) for a developer who wants a quick local run.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True when running in CI (``CI=true``, ``CI=1``...)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def opted_out(variable: str) -> bool:
    """True when ``variable`` (a ``CONVEYOR_SKIP_*`` switch) is set to a true value."""
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes")


def opt_out_mark(variable: str, what: str) -> pytest.MarkDecorator:
    """A ``skipif`` mark for the module's opt-out switch."""
    return pytest.mark.skipif(
        opted_out(variable), reason=f"{what} skipped on request ({variable} is set)"
    )


def require(problems: list[str], what: str, install: str) -> None:
    """Fail (in CI) or skip (elsewhere) when ``problems`` lists anything missing."""
    if not problems:
        return
    message = f"{what} needs: {'; '.join(problems)}. Install with: {install}"
    if in_ci():
        pytest.fail(f"{message} (CI must not skip this test)", pytrace=False)
    pytest.skip(message)
