"""The suite's own policy: CI spellings, per-checkout image tags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors import image_tag

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["true", "1", "True", "yes", "YES", " on "])
def test_every_spelling_of_ci_makes_a_missing_service_fail(value, tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests' / 'integration')!r})\n"
        "from tests_support import missing_service\n"
        "def test_needs_a_service():\n"
        "    missing_service('a service that is not there')\n"
    )
    env = {**os.environ, "CI": value}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO),
         "-c", str(REPO / "pyproject.toml"), "--confcutdir", str(REPO), str(probe)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert "1 failed" in result.stdout, result.stdout[-2000:]


def test_the_suite_never_runs_the_shared_version_tagged_images():
    assert image_tag() != "0.1.0" and "-test-" in image_tag()
