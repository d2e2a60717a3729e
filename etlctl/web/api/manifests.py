"""/apply, /diff and /export: manifests in the request body, plans in the response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request

from etlctl import manifest, scheduler, yamlio
from etlctl.errors import ValidationError
from etlctl.store import Store
from etlctl.web.deps import get_store, no_crontab

router = APIRouter(tags=["manifests"])
MANIFEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


async def _manifests(request: Request) -> list[manifest.Manifest]:
    """The request body as manifests (YAML, one or more documents), bounded like a file."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > yamlio.MAX_YAML_BYTES:
        raise ValidationError(
            f"the manifest body is larger than the {yamlio.MAX_YAML_BYTES} bytes a manifest "
            "may have",
            hint="send several smaller requests",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > yamlio.MAX_YAML_BYTES:
            raise ValidationError(f"the manifest body is larger than {yamlio.MAX_YAML_BYTES} bytes")
    if not body.strip():
        raise ValidationError("the request body holds no manifest (send YAML documents)")
    # Relative config paths resolve against the server's directory, as for `-f -`.
    return manifest.parse([manifest.ManifestFile("request body", bytes(body), Path.cwd())])


@router.post(
    "/apply",
    summary="Apply manifests (YAML body)",
    openapi_extra=MANIFEST_BODY,
    description="As `etlctl apply -f -`: the whole set is validated, then applied in one "
    "store transaction. With dry_run=true nothing changes (as POST /diff).",
)
async def apply(
    request: Request,
    prune: bool = False,
    dry_run: bool = False,
    store: Store = Depends(get_store),
    skip_crontab: bool = Depends(no_crontab),
) -> dict[str, Any]:
    manifests = await _manifests(request)
    plan = manifest.apply(store, manifests, prune=prune, dry_run=dry_run)
    if not dry_run:
        scheduler.sync_after_change(store, plan.schedules_changed, skip_crontab)
    return plan.to_json()


@router.post("/diff", summary="What applying manifests would change", openapi_extra=MANIFEST_BODY)
async def diff(
    request: Request, prune: bool = False, store: Store = Depends(get_store)
) -> dict[str, Any]:
    manifests = await _manifests(request)
    return manifest.apply(store, manifests, prune=prune, dry_run=True).to_json()


@router.get("/export", summary="The store as manifests (secrets as references)")
def export(store: Store = Depends(get_store)) -> dict[str, Any]:
    documents, warnings = manifest.export_documents(store.read())
    return {"documents": documents, "warnings": warnings}
