# Starting Latch for measurements: `latch up` or the real Spin, on the embedded
# database or the SQLite Cloud stand-in. Shared by scripts/bench.sh and
# scripts/load/run.sh. The caller sets:
#   work  a scratch directory (data, logs)
#   bin   the directory of the built latch and sqlitecloud-standin binaries
#   pids  an array; every process started is appended (the caller kills them)
# and may set LATCH_CACHE_DIR (compiled components; default target/bench-cache);
# it reads `serving_pid`: the process that serves requests (for Spin, its
# `spin trigger http` child, which is what SpinKube's shim runs in the pod).
# shellcheck shell=bash
# The caller's globals (work, bin, pids in; serving_pid out):
# shellcheck disable=SC2154,SC2034

# shellcheck source=keys.sh
source "$(dirname "${BASH_SOURCE[0]}")/keys.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # URL: waits up to 60 s for a 2xx
  for _ in $(seq 1 300); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no answer from $1" >&2
  return 1
}

start_latch() { # NAME MANIFEST PORT [env...]: starts latch up, waits for /health
  local name=$1 manifest=$2 port=$3
  shift 3
  env "$@" "$bin/latch" --log-format json up --from "$manifest" --listen "127.0.0.1:$port" \
    --data-dir "$work/$name" --cache-dir "${LATCH_CACHE_DIR:-target/bench-cache}" --no-watch \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  serving_pid=$!
  wait_http "http://127.0.0.1:$port/health"
}

start_spin() { # SPIN NAME PORT [env...]: migrates Spin's default database, starts spin up
  local spin=$1 name=$2 port=$3 state="$work/$2/spin"
  shift 3
  mkdir -p "$state"
  "$bin/latch" migrate --database "$state/sqlite_db.db" >/dev/null
  env "$@" "$spin" up -f spin.toml --listen "127.0.0.1:$port" --state-dir "$state" \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  local parent=$! child=''
  wait_http "http://127.0.0.1:$port/health"
  child=$(pgrep -P "$parent" | head -n1)
  pids+=("$child")
  serving_pid=$child
}

start_standin() { # KEY: starts the SQLite Cloud stand-in with database `latch`, migrated;
  # sets standin_port and standin_url (the database URL with the key)
  local key=$1
  standin_port=$(free_port)
  "$bin/sqlitecloud-standin" --listen "127.0.0.1:$standin_port" --data-dir "$work/standin" \
    --api-key "$key" >/dev/null 2>"$work/standin.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$standin_port/v2/health"
  curl -fs -X POST -H "authorization: Bearer $key" "http://127.0.0.1:$standin_port/v2/weblite/latch" >/dev/null
  standin_url="http://127.0.0.1:$standin_port/latch?apikey=$key"
  "$bin/latch" migrate --database-url "$standin_url" >&2
}

# The variables that point a runtime at the stand-in started by start_standin.
standin_env() {
  printf '%s\n' SPIN_VARIABLE_DB_TYPE=sqlitecloud "SPIN_VARIABLE_DATABASE_URL=$standin_url" \
    "SPIN_VARIABLE_DATABASE_ORIGIN=http://127.0.0.1:$standin_port"
}

status_mib() { awk -v field="$2:" '$1 == field {printf "%.0f", $2/1024}' "/proc/$1/status"; } # PID FIELD
