"""etlctl: container-isolated ELT syncs driven from the command line, cron and CI.

The CLI (etlctl.cli) is a thin layer over this package: everything it does can be done from
Python through etlctl.registry, etlctl.orchestrator, etlctl.manifest and etlctl.scheduler.
"""

__version__ = "0.1.0"
