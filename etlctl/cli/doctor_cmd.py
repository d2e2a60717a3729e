"""`etlctl doctor`: check everything a sync and a schedule need (etlctl.doctor), one line each."""

from __future__ import annotations

import typer
from rich.markup import escape

from etlctl import doctor
from etlctl.cli.options import amqp_url_option, network_option, runtime_option
from etlctl.cli.output import app_state, print_json, stdout

STYLES = {
    doctor.Status.OK: "green",
    doctor.Status.WARNING: "yellow",
    doctor.Status.ERROR: "bold red",
}


def doctor_command(
    ctx: typer.Context,
    connectors: bool = typer.Option(
        False, "--connectors", help="Also run every source's and loader's check (slower)."
    ),
    runtime: str | None = runtime_option(),
    amqp_url: str | None = amqp_url_option(),
    network: str | None = network_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check the store, Docker, RabbitMQ, the connector images, cron and the crontab entries,
    and the disk space where logs and targets live; each line ok / warning / error with
    the fix.

    Exits 0 when nothing is an error (warnings allowed), 1 on any error: fit for CI and
    monitoring.

    Examples:

      etlctl doctor

      etlctl doctor --connectors

      etlctl doctor --json | jq '.checks[] | select(.status != "ok")'
    """
    options = doctor.DoctorOptions(
        runtime=runtime, amqp_url=amqp_url, network=network, connectors=connectors
    )
    report = doctor.diagnose(app_state(ctx).store, options)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "counts": report.counts(),
                "checks": [finding.to_doc() for finding in report.findings],
            }
        )
    else:
        width = max(len(status.value) for status in doctor.Status)
        area_width = max((len(f.area) for f in report.findings), default=0)
        for finding in report.findings:
            label = f"[{STYLES[finding.status]}]{finding.status.value:<{width}}[/]"
            stdout.print(f"{label}  {finding.area:<{area_width}}  {escape(finding.message)}")
            if finding.fix:
                stdout.print(f"{'':<{width + area_width + 4}}fix: {escape(finding.fix)}")
        counts = report.counts()
        stdout.print(
            f"{counts['ok']} ok, {counts['warning']} warning(s), {counts['error']} error(s)",
            markup=False,
        )
    if not report.ok:
        raise typer.Exit(1)
