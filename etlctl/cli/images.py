"""`etlctl images ...`: build the built-in connector images and see which exist."""

from __future__ import annotations

import typer
from rich.status import Status

from etlctl.cli.output import print_json, print_table, say, stderr
from etlctl.runtime import images

BASE_IMAGE_ENV = "ETLCTL_BASE_IMAGE"

app = typer.Typer(
    help="Build the built-in connector images and list which are present.",
    no_args_is_help=True,
)


class BuildDisplay:
    """Build progress on stderr: a spinner with the builder's latest line on a terminal,
    every line as plain text otherwise (CI logs keep the whole build)."""

    def __init__(self) -> None:
        self.live = stderr.is_terminal
        self.stage = "preparing"
        self.status: Status | None = None

    def __enter__(self) -> BuildDisplay:
        if self.live:
            self.status = stderr.status(self.stage)
            self.status.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.status is not None:
            self.status.stop()

    def __call__(self, line: str) -> None:
        is_builder_line = line.startswith(images.BUILDER_LINE_PREFIX)
        if not self.live:
            stderr.print(line, markup=False, highlight=False)
            return
        if is_builder_line:
            detail = line.strip()[: max(20, stderr.width - len(self.stage) - 8)]
            assert self.status is not None
            self.status.update(f"{self.stage}  [dim]{_escape(detail)}[/dim]")
            return
        stderr.print(line, markup=False, highlight=False)
        self.stage = line
        assert self.status is not None
        self.status.update(_escape(line))


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


@app.command(
    "build",
    help=(
        "Build the connector runtime image and the connector images (all, or the TYPEs "
        "given), from dockerfiles/ with Python wheels prepared on the host.\n\n"
        "Examples:\n\n"
        "  etlctl images build\n\n"
        "  etlctl images build csv sqlite\n\n"
        "  etlctl images build loader-postgres --json\n\n"
        "  scripts/build-base-image.sh && etlctl images build "
        "--base-image etlctl/base-python:3.11-bookworm   (no registry)"
    ),
)
def build(
    types: list[str] | None = typer.Argument(
        None,
        metavar="TYPE",
        help="Connector types (csv) or role-type (loader-csv); default: all.",
        show_default=False,
    ),
    base_image: str | None = typer.Option(
        None,
        "--base-image",
        envvar=BASE_IMAGE_ENV,
        help="Image with Python 3.11 to build on (default: python:3.11-slim).",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the built images as JSON."),
) -> None:
    with BuildDisplay() as progress:
        built = images.build_images(types or None, base_image, progress)
    if as_json:
        print_json({"built": built})
        return
    say(f"built {len(built)} images: {', '.join(built)}")


@app.command(
    "list",
    help=(
        "List the connector images etlctl runs and whether each is present locally.\n\n"
        "Examples:\n\n  etlctl images list\n\n  etlctl images list --json | jq '.[] | "
        "select(.present | not) | .image'"
    ),
)
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    statuses = images.list_images()
    if as_json:
        print_json([status.to_dict() for status in statuses])
        return
    print_table(
        None,
        ["TYPE", "ROLE", "IMAGE", "STATUS", "SIZE"],
        [
            (
                s.type,
                s.role,
                s.image,
                ("stale" if s.stale else "present") if s.present else "missing",
                _megabytes(s.size) if s.present else "-",
            )
            for s in statuses
        ],
    )
    missing = [s for s in statuses if not s.present]
    if missing:
        stderr.print(f"{len(missing)} missing; build them: etlctl images build", highlight=False)
    stale = [s for s in statuses if s.present and s.stale]
    if stale:
        stderr.print(
            f"{len(stale)} stale ({stale[0].stale}); rebuild them: etlctl images build",
            highlight=False,
        )


def _megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1_000_000:.0f} MB"
