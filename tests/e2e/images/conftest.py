"""The images the tests here run, built once per session from the working tree."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.containers import ROOT, TAG, engine_env, image, missing_reason


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Build server, web and export from the working tree; their names by target."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    env = {**engine_env(), "IMAGE_TAG": TAG}
    start = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "deploy" / "images.sh"), "server", "web", "export"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    print(f"images built in {time.monotonic() - start:.0f} s")
    return {target: image(target) for target in ("server", "web", "export")}
