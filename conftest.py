"""Policy every test shares.

Connector images are tagged per checkout (``$ETLCTL_IMAGE_TAG``): several checkouts test on one
Docker engine, and none may run, rebuild or retag the images of another (nor the
``etlctl/*:<version>`` images a user built with ``make images``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from connectors import IMAGE_TAG_ENV, __version__

CHECKOUT = Path(__file__).resolve().parent


def checkout_image_tag() -> str:
    digest = hashlib.sha256(str(CHECKOUT).encode()).hexdigest()[:10]
    return f"{__version__}-test-{digest}"


os.environ.setdefault(IMAGE_TAG_ENV, checkout_image_tag())

# Every service check in the suite compares CI with "true": normalise once, here, before any
# test module reads it (tests_support.ci_requested says which spellings mean yes).
sys.path.insert(0, str(CHECKOUT / "tests" / "integration"))
from tests_support import ci_requested  # noqa: E402

if ci_requested(os.environ.get("CI")):
    os.environ["CI"] = "true"
