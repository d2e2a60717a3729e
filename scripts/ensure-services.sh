#!/usr/bin/env bash
# Make sure the services etlctl needs are installed, running and answering.
#
# Usage: scripts/ensure-services.sh [docker] [rabbitmq] [postgres] [cron] [chromium] [all]
#        (no argument means "all")
#
# Idempotent: each service is checked first; only what is missing is installed (apt-get, with
# `apt-get update` only when the package lists do not know the package) and only what is
# stopped is started. When everything already answers this takes well under a second per
# service. Exits non-zero with one clear line when a service cannot be provided.
#
# Endpoints it guarantees (the integration tests rely on them):
#   docker    `docker info` answers (unix:///var/run/docker.sock)
#   rabbitmq  amqp://guest:guest@127.0.0.1:5672/%2F
#   postgres  postgresql://postgres:postgres@127.0.0.1:5432/postgres
#   cron      the cron daemon runs and `crontab -l` works for the current user
#   chromium  /usr/bin/chromium and chromium-driver (the browser tests of `etlctl serve`)
set -euo pipefail

readonly WAIT_SECONDS="${ETLCTL_SERVICE_WAIT:-60}"
readonly PG_PASSWORD="postgres"

say() { printf 'ensure-services: %s\n' "$*"; }
die() { printf 'ensure-services: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Run a command as root: directly when we are root, through non-interactive sudo otherwise.
as_root() {
    # 9>&-: daemons started here must not inherit the lock descriptor (fd 9), or they would
    # hold the lock for as long as they live and every later run would wait for ever.
    if [ "$(id -u)" -eq 0 ]; then
        "$@" 9>&-
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n "$@" 9>&-
    else
        die "need root to run '$*' (run this script as root or with passwordless sudo)"
    fi
}

# Start a daemon with the lock descriptor (fd 9, see main) closed: a daemon that inherited it
# would hold the lock for its whole life and every later run of this script would hang.
start_daemon() { as_root "$@" 9>&-; }

# True when a process with this exact command name runs. Reads /proc directly: pgrep
# (procps) is missing from minimal Debian images.
process_running() {
    local comm name
    for comm in /proc/[0-9]*/comm; do
        read -r name 2>/dev/null <"$comm" || continue
        [ "$name" = "$1" ] && return 0
    done
    return 1
}

# True when systemd is PID 1: then services are started the system's way.
systemd_is_init() { [ -d /run/systemd/system ]; }

# Poll a check command until it succeeds or WAIT_SECONDS pass.
wait_until() {
    local what="$1"; shift
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.5
    done
    say "$what is up"
}

APT_UPDATED=0
# `apt-cache show` also succeeds for packages that are only referenced (e.g. by an installed
# package's Recommends) while the lists are empty: ask for an installable version instead.
apt_has_candidate() {
    local candidate
    candidate="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

# Install Debian packages, refreshing the package lists only when apt does not know one of
# them (a fresh machine has empty lists; a prepared one needs no network round trip).
apt_install() {
    have apt-get || die "apt-get not found: install $* by hand (this script supports Debian/Ubuntu)"
    local pkg
    for pkg in "$@"; do
        if [ "$APT_UPDATED" -eq 0 ] && ! apt_has_candidate "$pkg"; then
            say "apt-get update (package lists do not know $pkg)"
            as_root apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
            APT_UPDATED=1
        fi
    done
    say "installing $* (apt-get)"
    # The lock timeout lets us queue behind another apt run instead of failing at once.
    local log
    log="$(mktemp)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >"$log" 2>&1; then
        tail -n 15 "$log" >&2
        rm -f "$log"
        die "apt-get install $* failed"
    fi
    rm -f "$log"
}

# --- docker ---------------------------------------------------------------------------------
docker_answers() { docker info >/dev/null 2>&1; }

ensure_docker() {
    if have docker && docker_answers; then
        say "docker is up"
        return
    fi
    if ! have dockerd; then
        apt_install docker.io
    fi
    have docker || die "docker client missing after installing docker.io"
    if systemd_is_init; then
        start_daemon systemctl start docker || true
    fi
    if ! docker_answers && ! process_running dockerd; then
        say "starting dockerd (log: /var/log/dockerd.log)"
        # setsid + closed stdin: the daemon must outlive this script and its terminal.
        start_daemon bash -c 'setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &'
    fi
    wait_until "docker" docker info \
        || die "Docker engine did not answer within ${WAIT_SECONDS}s (see /var/log/dockerd.log)"
}

# --- rabbitmq -------------------------------------------------------------------------------
rabbitmq_answers() {
    as_root rabbitmqctl -q status >/dev/null 2>&1 && amqp_port_open
}

amqp_port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

rabbitmq_started() {
    as_root rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1 && amqp_port_open
}

ensure_rabbitmq() {
    # A quick port probe first: rabbitmqctl itself takes about a second to boot the Erlang VM.
    if have rabbitmqctl && amqp_port_open && rabbitmq_answers; then
        say "rabbitmq is up"
        return
    fi
    if ! have rabbitmq-server; then
        apt_install rabbitmq-server
    fi
    if systemd_is_init; then
        start_daemon systemctl start rabbitmq-server || true
    fi
    if ! as_root rabbitmqctl -q status >/dev/null 2>&1; then
        say "starting rabbitmq-server"
        start_daemon rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    # await_startup fails at once while the node has not registered yet, so poll it.
    wait_until "rabbitmq" rabbitmq_started \
        || die "RabbitMQ did not start within ${WAIT_SECONDS}s (see /var/log/rabbitmq/)"
}

# --- postgres -------------------------------------------------------------------------------
pg_password_login() {
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 \
        psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

# The first cluster that pg_lsclusters lists, as "VERSION NAME".
pg_first_cluster() { pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1, $2}'; }

ensure_postgres() {
    if have pg_isready && pg_isready -q -h 127.0.0.1 -p 5432 && pg_password_login; then
        say "postgres is up"
        return
    fi
    if ! have pg_ctlcluster || ! have psql; then
        apt_install postgresql postgresql-client
    fi
    local cluster
    cluster="$(pg_first_cluster)"
    if [ -z "$cluster" ]; then
        local version
        version="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)"
        [ -n "$version" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
        say "creating PostgreSQL cluster $version main"
        start_daemon pg_createcluster "$version" main >/dev/null
        cluster="$version main"
    fi
    # shellcheck disable=SC2086  # "VERSION NAME" is meant to split into two arguments
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        say "starting PostgreSQL cluster $cluster"
        start_daemon pg_ctlcluster $cluster start || true
    fi
    wait_until "postgres" pg_isready -q -h 127.0.0.1 -p 5432 \
        || die "PostgreSQL did not accept connections on 127.0.0.1:5432 within ${WAIT_SECONDS}s"
    if ! pg_password_login; then
        # Debian's pg_hba.conf asks for a password on 127.0.0.1; give postgres a known one.
        say "setting password of PostgreSQL user postgres"
        as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD '$PG_PASSWORD'\"" \
            >/dev/null
        pg_password_login \
            || die "cannot log in as postgres/postgres on 127.0.0.1:5432 (check pg_hba.conf)"
    fi
}

# --- cron -----------------------------------------------------------------------------------
cron_running() { process_running cron; }

ensure_cron() {
    if cron_running && have crontab; then
        say "cron is up"
        return
    fi
    if ! have cron || ! have crontab; then
        apt_install cron
    fi
    if ! cron_running; then
        if systemd_is_init; then
            start_daemon systemctl start cron || true
        fi
        # `cron` daemonizes itself.
        cron_running || start_daemon cron || true
    fi
    wait_until "cron" cron_running || die "the cron daemon did not start"
}

# --- chromium -----------------------------------------------------------------------------
# Debian's build: Playwright drives it with executable_path (its own download cannot work
# on hosts without internet access).
ensure_chromium() {
    if [ -x /usr/bin/chromium ] && have chromedriver; then
        say "chromium is installed"
        return
    fi
    apt_install chromium chromium-driver
    [ -x /usr/bin/chromium ] || die "chromium missing after installing it"
    say "chromium is installed"
}

# --- main -----------------------------------------------------------------------------------
main() {
    local services=("$@")
    if [ "${#services[@]}" -eq 0 ]; then
        services=(all)
    fi
    local wanted=() s
    for s in "${services[@]}"; do
        case "$s" in
            all) wanted+=(docker rabbitmq postgres cron chromium) ;;
            docker | rabbitmq | postgres | cron | chromium) wanted+=("$s") ;;
            -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown service '$s' (choose from: docker rabbitmq postgres cron chromium all)" ;;
        esac
    done
    # Serialize concurrent runs (e.g. parallel test sessions) so they do not race apt or start
    # a daemon twice.
    exec 9>"${TMPDIR:-/tmp}/etlctl-ensure-services.$(id -u).lock"
    flock -w 900 9 || die "another ensure-services run has held its lock for 15 minutes"
    local done_list=" "
    for s in "${wanted[@]}"; do
        case "$done_list" in *" $s "*) continue ;; esac
        "ensure_$s"
        done_list+="$s "
    done
}

main "$@"
