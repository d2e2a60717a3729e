"""`etlctl doctor`'s pure logic: exit codes from findings, image staleness, cron.allow/deny,
and the broker password never shown (tests/integration/test_doctor.py breaks things for real)."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import __version__
from etlctl import doctor, scheduler
from etlctl.runtime.images import DIGEST_LABEL, VERSION_LABEL, stale_reason
from etlctl.store import Store


@given(st.lists(st.sampled_from(list(doctor.Status)), max_size=12))
def test_the_report_fails_exactly_when_a_finding_is_an_error(statuses):
    report = doctor.Report([doctor.Finding("x", status, "m") for status in statuses])
    assert report.ok is (doctor.Status.ERROR not in statuses)
    assert sum(report.counts().values()) == len(statuses)


def test_stale_images_by_version_and_by_connector_code():
    assert stale_reason({VERSION_LABEL: __version__, DIGEST_LABEL: "abc"}, "abc") is None
    assert stale_reason({}, "abc") is None  # built before the labels existed: no opinion
    assert stale_reason({VERSION_LABEL: "0.0.1"}, "abc") == (
        f"built by etlctl 0.0.1, this is {__version__}"
    )
    assert stale_reason({VERSION_LABEL: __version__, DIGEST_LABEL: "old"}, "abc") == (
        "built from other connector code than this etlctl's"
    )


def test_cron_allow_and_deny(tmp_path, monkeypatch):
    import os
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    allow, deny = tmp_path / "cron.allow", tmp_path / "cron.deny"
    monkeypatch.setattr(scheduler, "CRON_ALLOW", allow)
    monkeypatch.setattr(scheduler, "CRON_DENY", deny)
    assert scheduler.crontab_refusal() is None
    deny.write_text(f"{me}\n")
    assert scheduler.crontab_refusal() == f"{me} is listed in {deny}"
    allow.write_text("someone-else\n")
    assert scheduler.crontab_refusal() == f"{me} is not listed in {allow}"
    allow.write_text(f"someone-else\n{me}\n")
    assert scheduler.crontab_refusal() is None


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=20))
def test_the_broker_password_is_never_in_a_finding(tmp_path_factory, tail):
    password = "Zq7-" + tail  # a marker: no message holds it by chance
    store = Store(tmp_path_factory.mktemp("s") / "store.json")
    # Port 1 on loopback: refused at once, nothing listens there.
    url = f"amqp://user:{quote(password, safe='')}@127.0.0.1:1/%2F"
    findings = list(doctor.check_rabbitmq(store, None, url))
    assert [f.status for f in findings] == [doctor.Status.ERROR]
    for finding in findings:
        shown = finding.message + (finding.fix or "")
        assert password not in shown and quote(password, safe="") not in shown
