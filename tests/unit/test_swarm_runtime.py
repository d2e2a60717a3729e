"""Pure logic of the swarm runtime: names the swarm accepts, and what a task's status means."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from etlctl.runtime.base import VANISHED_EXIT_CODE
from etlctl.runtime.swarm import NOT_STARTED_EXIT_CODE, PENDING_STATES, swarm_name, task_outcome

# Docker's rule for service and secret names (and a DNS label's length).
SWARM_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")
launch_names = st.from_regex(
    r"etlctl-[a-z0-9][a-z0-9_-]{0,62}-run-[0-9a-z-]{1,40}-(extractor|loader)", fullmatch=True
)


@given(launch_names)
def test_every_launch_name_becomes_a_valid_swarm_name(name):
    made = swarm_name(name)
    assert len(made) <= 63 and SWARM_NAME.fullmatch(made)
    if len(name) <= 63:
        assert made == name


@given(launch_names, launch_names)
def test_different_names_stay_different(first, second):
    if first != second:
        assert swarm_name(first) != swarm_name(second)


def _task(state: str, exit_code: int | None = None, err: str | None = None) -> dict:
    status: dict = {"State": state}
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": "abc", "ExitCode": exit_code}
    if err:
        status["Err"] = err
    return {"Status": status}


def test_a_task_still_on_its_way_has_no_exit_code():
    for state in PENDING_STATES:
        assert task_outcome(_task(state)) == (None, None)


@given(st.integers(min_value=0, max_value=255))
def test_an_ended_container_gives_its_exit_code(code):
    state = "complete" if code == 0 else "failed"
    assert task_outcome(_task(state, code, "task: non-zero exit")) == (code, None)
    assert task_outcome(_task("shutdown", code)) == (code, None)  # stopped by a scale to 0


def test_a_rejected_task_fails_with_the_swarms_reason():
    outcome = task_outcome(_task("rejected", err="No such image: etlctl/x:1"))
    assert outcome == (NOT_STARTED_EXIT_CODE, "No such image: etlctl/x:1")


def test_a_task_shut_down_before_its_container_ran_counts_as_vanished():
    assert task_outcome(_task("shutdown"))[0] == VANISHED_EXIT_CODE
