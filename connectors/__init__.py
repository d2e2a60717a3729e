"""The built-in etlctl connectors and the SDK they are written with.

This package runs inside the connector images: it never imports ``etlctl``. Importing it (or
``connectors.registry``) is cheap: the implementations and their libraries (pika, orjson,
psycopg) are imported only when a connector runs.
"""

__version__ = "0.1.0"
