#!/usr/bin/env bash
# AWS emulators for the integration tests: LocalStack (S3 + KMS, no Docker) and
# moto (DynamoDB; S3 + KMS too with --all-moto), on loopback only.
#
#   localstack/emulators.sh install [--all-moto]  # venvs under target/emulators/ (idempotent)
#   localstack/emulators.sh start   [--all-moto]  # start, create resources, write env.sh
#   localstack/emulators.sh stop                  # stop everything started by `start`
#   localstack/emulators.sh status
#   localstack/emulators.sh tools                 # SAM CLI, cfn-lint, cargo-lambda venv; prints its bin dir
#
# After `start`:  source target/emulators/env.sh
#
# Environment knobs:
#   SKYE_EMULATORS_DIR            state dir (default: <repo>/target/emulators)
#   SKYE_PYTHON313                Python 3.13 interpreter for LocalStack (default: searched)
#   SKYE_MOTO_PYTHON              interpreter for the moto venv (default: python3.13, else python3)
#   SKYE_EMULATOR_START_TIMEOUT   seconds to wait for each emulator (default: 60)
#   plus the names create-resources.py reads (SKYE_FILES_TABLE, SKYE_TEMP_BUCKET, ...).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
EMU_DIR="${SKYE_EMULATORS_DIR:-$REPO_ROOT/target/emulators}"
LOG_DIR="$EMU_DIR/logs"
PIDS_FILE="$EMU_DIR/pids"
ENV_FILE="$EMU_DIR/env.sh"
LS_VENV="$EMU_DIR/venv-localstack"
MOTO_VENV="$EMU_DIR/venv-moto"
START_TIMEOUT="${SKYE_EMULATOR_START_TIMEOUT:-60}"

# Loopback traffic must never go through an HTTP proxy from the environment.
export NO_PROXY="127.0.0.1${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1${no_proxy:+,$no_proxy}"

# localstack-core[runtime] dependencies published only as source distributions.
LS_SDIST_ONLY="airspeed-ext,crontab,jsonpath-rw"

say() { printf 'emulators: %s\n' "$*" >&2; }
die() { printf 'emulators: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ------------------------------------------------------------------ pythons

py_is_313() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1; }
py_is_usable() { "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)' >/dev/null 2>&1; }

find_python313() {
    local c root
    local candidates=()
    if [[ -n "${SKYE_PYTHON313:-}" ]]; then
        py_is_313 "$SKYE_PYTHON313" || die "SKYE_PYTHON313=$SKYE_PYTHON313 is not a working Python 3.13"
        printf '%s\n' "$SKYE_PYTHON313"
        return 0
    fi
    root=""
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null || true)"
    fi
    for c in "${root:-${PYENV_ROOT:-$HOME/.pyenv}}"/versions/3.13*/bin/python3.13 \
             "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
        [[ -x "$c" ]] && candidates+=("$c")
    done
    c="$(command -v python3.13 2>/dev/null || true)"
    [[ -n "$c" ]] && candidates+=("$c")
    c="$(command -v python3 2>/dev/null || true)"
    [[ -n "$c" ]] && candidates+=("$c")
    for c in ${candidates[@]+"${candidates[@]}"}; do
        if py_is_313 "$c"; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

find_moto_python() {
    local c
    if [[ -n "${SKYE_MOTO_PYTHON:-}" ]]; then
        py_is_usable "$SKYE_MOTO_PYTHON" || die "SKYE_MOTO_PYTHON=$SKYE_MOTO_PYTHON is not a usable Python (>= 3.9 with venv)"
        printf '%s\n' "$SKYE_MOTO_PYTHON"
        return 0
    fi
    if c="$(find_python313)"; then
        printf '%s\n' "$c"
        return 0
    fi
    c="$(command -v python3 2>/dev/null || true)"
    if [[ -n "$c" ]] && py_is_usable "$c"; then
        printf '%s\n' "$c"
        return 0
    fi
    return 1
}

# ------------------------------------------------------------------ install

# install_venv VENV PYTHON REQUIREMENTS CONSTRAINTS [extra pip args...]
install_venv() {
    local venv="$1" python="$2" req="$3" cons="$4"
    shift 4
    local hash stamp start_s
    hash="$("$python" - "$req" "$cons" "$@" <<'PY'
import hashlib, sys
h = hashlib.sha256()
h.update(("%d.%d" % sys.version_info[:2]).encode())
for path in sys.argv[1:3]:  # pins only: comments and blank lines do not count
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                h.update(line.encode() + b"\n")
h.update(" ".join(sys.argv[3:]).encode())
print(h.hexdigest()[:16])
PY
)"
    stamp="$venv/.installed-$hash"
    if [[ -f "$stamp" && -x "$venv/bin/python" ]]; then
        say "$(basename "$venv"): up to date ($(basename "$stamp"))"
        return 0
    fi
    start_s=$SECONDS
    say "$(basename "$venv"): creating with $python ($("$python" -V 2>&1))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # Pin pip itself first (>= 26 is needed for --build-constraint).
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$cons" pip
    "$venv/bin/python" -m pip install --disable-pip-version-check -q \
        -r "$req" -c "$cons" --build-constraint "$cons" "$@"
    "$venv/bin/python" -m pip check >&2 || die "$(basename "$venv"): pip check failed"
    touch "$stamp"
    say "$(basename "$venv"): installed in $((SECONDS - start_s)) s"
}

install_moto() {
    local py
    py="$(find_moto_python)" || die "no usable python3 (>= 3.9) found for the moto venv"
    install_venv "$MOTO_VENV" "$py" \
        "$SCRIPT_DIR/requirements-moto.txt" "$SCRIPT_DIR/constraints-moto.txt" \
        --only-binary=:all:
}

install_localstack() {
    local py
    py="$(find_python313)" || die "LocalStack needs Python 3.13 and none was found (set SKYE_PYTHON313, install it with pyenv, or use --all-moto)"
    install_venv "$LS_VENV" "$py" \
        "$SCRIPT_DIR/requirements-localstack.txt" "$SCRIPT_DIR/constraints-localstack.txt" \
        --only-binary=:all: --no-binary="$LS_SDIST_ONLY"
}

# SAM CLI, cfn-lint, cargo-lambda and zig (deployment checks and arm64 builds); prints the bin dir.
cmd_tools() {
    local py venv="$REPO_ROOT/target/tools/venv-sam"
    py="$(find_python313)" || die "the SAM tools venv needs Python 3.13 (set SKYE_PYTHON313 or install it with pyenv)"
    mkdir -p "$(dirname "$venv")"
    install_venv "$venv" "$py" \
        "$SCRIPT_DIR/requirements-sam.txt" "$SCRIPT_DIR/constraints-sam.txt" \
        --only-binary=:all:
    printf '%s\n' "$venv/bin"
}

cmd_install() {
    local all_moto=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --all-moto) all_moto=1 ;;
            *) usage ;;
        esac
        shift
    done
    mkdir -p "$EMU_DIR"
    install_moto
    if [[ $all_moto -eq 0 ]]; then
        install_localstack
    fi
}

# ------------------------------------------------------------------ processes

# spawn LOGFILE CMD... : start CMD in its own session (process group), detached
# from this shell, stdin from /dev/null; prints its PID.
spawn() {
    local logfile="$1"
    shift
    "$MOTO_VENV/bin/python" - "$logfile" "$@" <<'PY'
import os, subprocess, sys
with open(sys.argv[1], "ab") as out, open(os.devnull, "rb") as devnull:
    p = subprocess.Popen(sys.argv[2:], stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True, close_fds=True)
print(p.pid)
PY
}

# free_ports N : N distinct free loopback TCP ports, never 5000, space separated.
free_ports() {
    "$MOTO_VENV/bin/python" - "$1" <<'PY'
import socket, sys
want, socks, ports = int(sys.argv[1]), [], []
while len(ports) < want:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    port = s.getsockname()[1]
    if port != 5000 and port not in ports:
        ports.append(port)
for s in socks:
    s.close()
print(" ".join(map(str, ports)))
PY
}

# Alive = exists and is not a zombie (a reaper-less PID 1 may leave zombies behind).
pid_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    case "$(ps -o stat= -p "$1" 2>/dev/null || true)" in
        Z*) return 1 ;;
    esac
    return 0
}

# Only ever signal processes whose command line points into our state dir, so a
# stale pids file can never hit an unrelated process that reused the PID.
pid_is_ours() {
    local args
    args="$(ps -o args= -p "$1" 2>/dev/null || true)"
    [[ -n "$args" && "$args" == *"$EMU_DIR"* ]]
}

signal_pid() {
    local sig="$1" pid="$2" pgid
    pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)"
    if [[ "$pgid" == "$pid" ]]; then
        kill "-$sig" -- "-$pid" 2>/dev/null || true
    else
        kill "-$sig" "$pid" 2>/dev/null || true
    fi
}

fail_start() {
    local name="$1" log="$2" msg="$3"
    say "$name: $msg"
    if [[ -f "$log" ]]; then
        say "---- last 40 lines of $log ----"
        tail -n 40 "$log" >&2 || true
        say "---- end of $log ----"
    fi
    cmd_stop || true
    exit 1
}

# wait_ready NAME PID LOG URL [localstack]
wait_ready() {
    local name="$1" pid="$2" log="$3" url="$4" kind="${5:-any}"
    local deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! pid_alive "$pid"; then
            fail_start "$name" "$log" "process $pid exited during startup"
        fi
        if "$MOTO_VENV/bin/python" - "$url" "$kind" <<'PY' 2>/dev/null
import json, sys, urllib.error, urllib.request
url, kind = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=2) as r:
        body = r.read()
except urllib.error.HTTPError as e:
    sys.exit(1 if kind == "localstack" else 0)   # any HTTP answer means up
if kind == "localstack":
    services = json.loads(body).get("services", {})
    ok = all(services.get(s) in ("available", "running") for s in ("s3", "kms"))
    sys.exit(0 if ok else 1)
PY
        then
            return 0
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            fail_start "$name" "$log" "not ready at $url after ${START_TIMEOUT} s"
        fi
        sleep 0.2
    done
}

# ------------------------------------------------------------------ start / stop

cmd_start() {
    local all_moto=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --all-moto) all_moto=1 ;;
            *) usage ;;
        esac
        shift
    done

    if [[ -f "$PIDS_FILE" ]]; then
        say "emulators from an earlier start are recorded; stopping them first"
        cmd_stop
    fi
    if [[ $all_moto -eq 1 ]]; then cmd_install --all-moto; else cmd_install; fi

    mkdir -p "$LOG_DIR"
    rm -f "$ENV_FILE"
    : > "$PIDS_FILE"
    local t0=$SECONDS ports moto_port ls_port moto_pid ls_pid
    ports="$(free_ports 2)"
    moto_port="${ports%% *}"
    ls_port="${ports##* }"

    local moto_log="$LOG_DIR/moto.log" ls_log="$LOG_DIR/localstack.log"
    : > "$moto_log"
    moto_pid="$(spawn "$moto_log" "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port")"
    echo "$moto_pid" >> "$PIDS_FILE"
    say "moto: pid $moto_pid on 127.0.0.1:$moto_port (log $moto_log)"

    if [[ $all_moto -eq 0 ]]; then
        # Fresh state on every start, but keep LocalStack's cache (service catalog,
        # self-signed cert) so later starts skip rebuilding it.
        local ls_fs="$EMU_DIR/localstack-fs" ls_cache="$EMU_DIR/localstack-cache"
        if [[ -d "$ls_fs/var/lib/localstack/cache" ]]; then
            rm -rf "$ls_cache"
            mv "$ls_fs/var/lib/localstack/cache" "$ls_cache"
        fi
        rm -rf "$ls_fs"
        mkdir -p "$ls_fs/var/lib/localstack"
        if [[ -d "$ls_cache" ]]; then
            mv "$ls_cache" "$ls_fs/var/lib/localstack/cache"
        fi
        : > "$ls_log"
        ls_pid="$(spawn "$ls_log" env \
            GATEWAY_LISTEN="127.0.0.1:$ls_port" \
            LOCALSTACK_HOST="127.0.0.1:$ls_port" \
            SERVICES=s3,kms \
            DNS_ADDRESS=0 \
            DISABLE_EVENTS=1 \
            SKIP_SSL_CERT_DOWNLOAD=1 \
            PERSISTENCE=0 \
            OVERRIDE_IN_DOCKER=0 \
            FILESYSTEM_ROOT="$ls_fs" \
            "$LS_VENV/bin/python" "$SCRIPT_DIR/localstack-main.py")"
        echo "$ls_pid" >> "$PIDS_FILE"
        say "localstack: pid $ls_pid on 127.0.0.1:$ls_port (log $ls_log)"
    fi

    wait_ready moto "$moto_pid" "$moto_log" "http://127.0.0.1:$moto_port/moto-api/"
    say "moto: ready after $((SECONDS - t0)) s"
    local moto_url="http://127.0.0.1:$moto_port" s3_url kms_url set_name
    if [[ $all_moto -eq 0 ]]; then
        wait_ready localstack "$ls_pid" "$ls_log" "http://127.0.0.1:$ls_port/_localstack/health" localstack
        say "localstack: ready after $((SECONDS - t0)) s"
        s3_url="http://127.0.0.1:$ls_port"
        kms_url="http://127.0.0.1:$ls_port"
        set_name="localstack+moto"
    else
        s3_url="$moto_url"
        kms_url="$moto_url"
        set_name="moto"
    fi

    local base="$EMU_DIR/env.base.sh" resources="$EMU_DIR/resources.env"
    cat > "$base" <<EOF
# Written by localstack/emulators.sh start; source it before running the tests.
export AWS_ENDPOINT_URL_S3=$s3_url
export AWS_ENDPOINT_URL_KMS=$kms_url
export AWS_ENDPOINT_URL_DYNAMODB=$moto_url
export AWS_ENDPOINT_URL_SECRETS_MANAGER=$moto_url
export AWS_ENDPOINT_URL_SSM=$moto_url
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export SKYE_TEST_EMULATORS=1
export SKYE_TEST_EMULATOR_SET=$set_name
export NO_PROXY="127.0.0.1\${NO_PROXY:+,\$NO_PROXY}"
export no_proxy="127.0.0.1\${no_proxy:+,\$no_proxy}"
EOF
    rm -f "$resources"
    if ! (
        # shellcheck disable=SC1090
        . "$base"
        "$MOTO_VENV/bin/python" "$SCRIPT_DIR/create-resources.py" "$resources"
    ) 2>> "$LOG_DIR/create-resources.log"; then
        fail_start create-resources "$LOG_DIR/create-resources.log" "failed"
    fi
    cat "$base" "$resources" > "$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    rm -f "$base" "$resources"
    say "ready ($set_name) after $((SECONDS - t0)) s; run: source ${ENV_FILE#"$REPO_ROOT"/}"
}

cmd_stop() {
    if [[ ! -f "$PIDS_FILE" ]]; then
        say "nothing to stop"
        rm -f "$ENV_FILE"
        return 0
    fi
    local pid live=() i
    while read -r pid; do
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        if pid_alive "$pid"; then
            if pid_is_ours "$pid"; then
                signal_pid TERM "$pid"
                live+=("$pid")
            else
                say "pid $pid is not one of ours any more; leaving it alone"
            fi
        fi
    done < "$PIDS_FILE"
    for ((i = 0; i < 100; i++)); do
        local still=()
        for pid in ${live[@]+"${live[@]}"}; do
            pid_alive "$pid" && still+=("$pid")
        done
        [[ ${#still[@]} -eq 0 ]] && break
        sleep 0.1
    done
    for pid in ${live[@]+"${live[@]}"}; do
        if pid_alive "$pid"; then
            say "pid $pid ignored TERM; sending KILL"
            signal_pid KILL "$pid"
        fi
    done
    rm -f "$PIDS_FILE" "$ENV_FILE"
    say "stopped ${#live[@]} process(es)"
}

cmd_status() {
    local pid n=0
    if [[ -f "$PIDS_FILE" ]]; then
        while read -r pid; do
            [[ "$pid" =~ ^[0-9]+$ ]] || continue
            if pid_alive "$pid"; then
                echo "running: $pid $(ps -o args= -p "$pid" 2>/dev/null | cut -c1-200)"
                n=$((n + 1))
            else
                echo "dead:    $pid"
            fi
        done < "$PIDS_FILE"
    fi
    [[ -f "$ENV_FILE" ]] && echo "env: $ENV_FILE" && cat "$ENV_FILE"
    [[ $n -gt 0 ]]
}

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
case "$cmd" in
    install) cmd_install "$@" ;;
    tools) cmd_tools ;;
    start) cmd_start "$@" ;;
    stop) [[ $# -eq 0 ]] || usage; cmd_stop ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
