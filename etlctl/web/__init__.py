"""`etlctl serve`: the REST API, the web admin and /metrics, a second front beside the CLI.

As thin as the CLI: it parses requests, calls the same core API (registry, orchestrator,
launcher, store, manifest, scheduler) and renders what etlctl.views gives. FastAPI, uvicorn
and Jinja2 are imported only here, so the CLI does not pay for them.
"""
