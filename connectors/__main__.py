"""``python -m connectors ROLE TYPE spec|check|run`` (the images' entrypoint)."""

import sys

from connectors.sdk.entrypoint import main

if __name__ == "__main__":
    sys.exit(main())
