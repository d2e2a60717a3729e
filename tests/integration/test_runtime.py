"""The runtimes against a real Docker engine and real processes: isolation, labels, cleanup."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import image_tag
from etlctl.errors import EtlctlError, ImageMissingError, SyncTimeoutError
from etlctl.runtime import ConnectorLaunch, Mount, get_runtime
from etlctl.runtime import local as local_runtime

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-never-in-inspect"
PROBE_IMAGE = "etlctl-test/runtime-probe:1"
# Prints what the connector sees, checks what it may not do, then sleeps ARGV[1] seconds
# and exits with ARGV[2]. Built on the runtime image, so it runs as the real connectors do.
PROBE_SCRIPT = """
import json, os, sys, time
run_file = os.environ["ETLCTL_RUN_FILE"]
document = json.load(open(run_file))
def can_write(path):
    try:
        with open(path, "a"):
            return True
    except OSError:
        return False
print(json.dumps({
    "env_run_file": run_file,
    "connection": document["run"]["connection"],
    "run_file_writable": can_write(run_file),
    "ro_mount_writable": can_write(os.path.join(document["ro_dir"], "x")),
    "rw_mount_writable": can_write(os.path.join(document["rw_dir"], "written")),
    "uid": os.getuid(),
}), flush=True)
time.sleep(float(sys.argv[1]))
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture(scope="module")
def probe_image(connector_images: list[str]) -> str:
    from etlctl.runtime.images import runtime_image

    dockerfile = (
        f"FROM {runtime_image()}\n"
        f"ENTRYPOINT [\"python3\", \"-c\", {json.dumps(PROBE_SCRIPT)}]\n"
    )  # fmt: skip
    subprocess.run(
        ["docker", "build", "-q", "-t", PROBE_IMAGE, "-"],
        input=dockerfile, text=True, check=True, capture_output=True,
    )  # fmt: skip
    return PROBE_IMAGE


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    made = {name: tmp_path / name for name in ("work", "ro", "rw")}
    for path in made.values():
        path.mkdir()
    return made


def probe_launch(image: str, run_id: str, dirs: dict[str, Path], sleep: float, code: int = 0):
    run_file = dirs["work"] / "run.json"
    document = {
        "run": {"connection": "probe", "id": run_id},
        "config": {"password": SECRET},
        "ro_dir": str(dirs["ro"]),
        "rw_dir": str(dirs["rw"]),
    }
    run_file.write_text(json.dumps(document))
    run_file.chmod(0o600)  # as the orchestrator writes it: the container runs as our uid
    return ConnectorLaunch(
        name=f"etlctl-test-probe-{run_id}",
        role="extractor",
        connector_type="probe",
        image=image,
        run_file=str(run_file),
        labels={"io.etlctl.managed": "true", "io.etlctl.test": "runtime", "io.etlctl.run": run_id},
        mounts=(Mount(str(dirs["ro"]), read_only=True), Mount(str(dirs["rw"]), read_only=False)),
        network="host",
        command=(str(sleep), str(code)),
    )


def docker_inspect(name: str) -> dict:
    out = subprocess.run(
        ["docker", "inspect", name], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


def containers_labelled(run_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=io.etlctl.run={run_id}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


@pytest.fixture
def docker_runtime(docker_engine: None):
    runtime = get_runtime("docker")
    runtime.preflight()
    return runtime


@pytest.fixture
def cleanup_docker(docker_runtime, run_id: str) -> Iterator[None]:
    yield
    docker_runtime.remove_leftovers({"io.etlctl.run": run_id})


# --- docker -------------------------------------------------------------------------------
@pytest.mark.usefixtures("cleanup_docker")
def test_a_running_connector_is_isolated_and_leftovers_are_removed(
    docker_runtime, probe_image, run_id, dirs
):
    launch = probe_launch(probe_image, run_id, dirs, sleep=60)
    handle = docker_runtime.start(launch)
    wait_for(lambda: "rw_mount_writable" in docker_runtime.logs(handle))
    assert docker_runtime.exit_code(handle) is None

    seen = json.loads(docker_runtime.logs(handle).strip().splitlines()[0])
    assert seen == {
        "env_run_file": "/etlctl/run.json",
        "connection": "probe",
        "run_file_writable": False,
        "ro_mount_writable": False,
        "rw_mount_writable": True,
        "uid": os.getuid(),
    }

    inspected = docker_inspect(launch.name)
    image_env = set(docker_inspect(probe_image)["Config"]["Env"])
    assert set(inspected["Config"]["Env"]) - image_env == {"ETLCTL_RUN_FILE=/etlctl/run.json"}
    assert SECRET not in json.dumps(inspected)
    host = inspected["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "host"
    assert host["AutoRemove"] is False
    assert inspected["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
    mounts = {m["Destination"]: m for m in inspected["Mounts"]}
    assert mounts["/etlctl/run.json"]["RW"] is False
    assert mounts[str(dirs["ro"])]["RW"] is False and mounts[str(dirs["rw"])]["RW"] is True
    assert not any("docker.sock" in m["Source"] for m in inspected["Mounts"])
    assert inspected["Config"]["Labels"]["io.etlctl.run"] == run_id

    memory = docker_runtime.stats_peak_memory(handle)
    assert memory is None or memory > 0

    removed = docker_runtime.remove_leftovers(
        {"io.etlctl.test": "runtime", "io.etlctl.run": run_id}
    )
    assert removed == [launch.name]
    assert containers_labelled(run_id) == []
    docker_runtime.remove(handle)  # idempotent: already gone
    assert docker_runtime.remove_leftovers({"io.etlctl.run": run_id}) == []


@pytest.mark.usefixtures("cleanup_docker")
def test_exit_code_and_logs_are_read_before_removal(docker_runtime, probe_image, run_id, dirs):
    handle = docker_runtime.start(probe_launch(probe_image, run_id, dirs, sleep=0, code=3))
    wait_for(lambda: docker_runtime.exit_code(handle) is not None)
    assert docker_runtime.exit_code(handle) == 3
    assert '"connection": "probe"' in docker_runtime.logs(handle)
    docker_runtime.remove(handle)
    docker_runtime.remove(handle)
    assert containers_labelled(run_id) == []


@pytest.mark.usefixtures("cleanup_docker")
def test_stop_kills_a_running_connector(docker_runtime, probe_image, run_id, dirs):
    handle = docker_runtime.start(probe_launch(probe_image, run_id, dirs, sleep=600))
    started = time.monotonic()
    docker_runtime.stop(handle, timeout=1)
    assert time.monotonic() - started < 15
    assert docker_runtime.exit_code(handle) not in (None, 0)
    docker_runtime.remove(handle)


@pytest.mark.usefixtures("cleanup_docker")
def test_run_once_returns_spec_output_and_removes_the_container(docker_runtime, run_id, dirs):
    launch = probe_launch(f"etlctl/extractor-csv:{image_tag()}", run_id, dirs, sleep=0)
    launch = ConnectorLaunch(**{**launch.__dict__, "command": ("spec",)})
    code, stdout, stderr = docker_runtime.run_once(launch, timeout=60)
    assert code == 0, stderr
    assert json.loads(stdout)["title"] == "csv extractor"
    assert containers_labelled(run_id) == []


@pytest.mark.usefixtures("cleanup_docker")
def test_run_once_times_out_and_cleans_up(docker_runtime, probe_image, run_id, dirs):
    with pytest.raises(SyncTimeoutError):
        docker_runtime.run_once(probe_launch(probe_image, run_id, dirs, sleep=600), timeout=2)
    assert containers_labelled(run_id) == []


@pytest.mark.usefixtures("cleanup_docker")
def test_a_container_that_cannot_start_is_not_left_behind(
    docker_runtime, probe_image, run_id, dirs
):
    """An unknown --network used to leave a 'Created' container (`source check` has no
    connection label, so neither the next sync nor `etlctl gc` ever removed it)."""
    launch = dataclasses.replace(
        probe_launch(probe_image, run_id, dirs, sleep=0), network=f"etlctl-no-net-{run_id}"
    )
    with pytest.raises(EtlctlError, match=r"network .* not found"):
        docker_runtime.start(launch)
    assert containers_labelled(run_id) == []


def test_a_missing_image_says_how_to_build_it(docker_runtime):
    with pytest.raises(ImageMissingError) as caught:
        docker_runtime.ensure_image("etlctl/extractor-csv:0.0.0-missing")
    assert caught.value.hint == "build it: etlctl images build csv"
    assert caught.value.exit_code == 6


# --- local --------------------------------------------------------------------------------
@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ETLCTL_STORE", str(tmp_path / "home" / "store.json"))
    return tmp_path / "home"


def test_local_runtime_runs_a_connector_check(local_home, tmp_path):
    csv_file = tmp_path / "users.csv"
    csv_file.write_text("id,name\n1,Ada\n")
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({
        "protocol": 1, "role": "extractor", "connector_type": "csv",
        "config": {"path": str(csv_file)}, "state": None,
        "sync": {"mode": "full_refresh", "cursor_field": None, "primary_key": [],
                 "on_error": "fail", "transform": None},
        "run": {"id": "r-1", "connection": "local", "connection_id": "c-1"},
        "broker": None, "batch": {"max_records": 10, "max_bytes": 4096, "commit_every": 2},
        "rejects_path": None,
    }))  # fmt: skip
    runtime = get_runtime("local")
    runtime.preflight()
    launch = ConnectorLaunch(
        name="etlctl-local-check", role="extractor", connector_type="csv", image="ignored",
        run_file=str(run_file), labels={"io.etlctl.run": "r-1"}, command=("check",),
    )  # fmt: skip
    assert runtime.run_once(launch, timeout=60) == (0, '{"status": "ok"}\n', "")

    handle = runtime.start(launch)
    wait_for(lambda: runtime.exit_code(handle) is not None)
    assert runtime.exit_code(handle) == 0
    assert '"status": "ok"' in runtime.logs(handle)
    runtime.remove(handle)
    runtime.remove(handle)
    assert list((local_home / "local-runtime").glob("*.json")) == []


def test_local_leftovers_of_a_killed_etlctl_are_killed(local_home, tmp_path, monkeypatch):
    # The process management under test is real; only the program is swapped for one that
    # stays alive, as a connector waiting on a broker would.
    monkeypatch.setattr(
        local_runtime,
        "connector_command",
        lambda launch: [sys.executable, "-c", "import time; time.sleep(600)"],
    )
    runtime = get_runtime("local")
    launch = ConnectorLaunch(
        name="etlctl-local-sleeper", role="loader", connector_type="sqlite", image="ignored",
        run_file=str(tmp_path / "run.json"),
        labels={"io.etlctl.connection": "c", "io.etlctl.run": "r-2"},
    )  # fmt: skip
    handle = runtime.start(launch)
    pid = handle.process.pid
    assert runtime.exit_code(handle) is None
    assert (runtime.stats_peak_memory(handle) or 0) > 0

    assert runtime.remove_leftovers({"io.etlctl.connection": "other"}) == []
    assert runtime.remove_leftovers({"io.etlctl.connection": "c"}) == [launch.name]
    wait_for(lambda: runtime.exit_code(handle) is not None)
    assert runtime.exit_code(handle) == 128 + 9
    assert not Path(f"/proc/{pid}").exists() or handle.process.returncode is not None
    runtime.remove(handle)


def test_local_stop_terminates_the_process_group(local_home, tmp_path, monkeypatch):
    monkeypatch.setattr(
        local_runtime,
        "connector_command",
        lambda launch: [sys.executable, "-c", "import time; time.sleep(600)"],
    )
    runtime = get_runtime("local")
    launch = ConnectorLaunch(
        name="etlctl-local-stop", role="loader", connector_type="sqlite", image="ignored",
        run_file=str(tmp_path / "run.json"), labels={"io.etlctl.run": "r-3"},
    )  # fmt: skip
    handle = runtime.start(launch)
    runtime.stop(handle, timeout=2)
    assert runtime.exit_code(handle) == 128 + 15
    runtime.remove(handle)
