"""The built-in etlctl connectors and the SDK they are written with.

This package runs inside the connector images: it never imports ``etlctl``. Importing it (or
``connectors.registry``) is cheap: the implementations and their libraries (pika, orjson,
psycopg) are imported only when a connector runs.
"""

__version__ = "0.1.0"

# The tag the connector images are built and run under. A checkout that must not share images
# with others (the test suite; several worktrees on one engine) sets its own in
# ``ETLCTL_IMAGE_TAG``; users keep the version.
IMAGE_TAG_ENV = "ETLCTL_IMAGE_TAG"


def image_tag() -> str:
    import os

    return os.environ.get(IMAGE_TAG_ENV) or __version__
