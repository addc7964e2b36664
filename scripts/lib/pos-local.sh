# Sourced by the scripts that need a throwaway pos-local: start_pos_local BIN starts `BIN serve` on a free
# loopback port with a temporary store, sets $url, and stops the server and removes the store on exit
# (extra cleanup: put paths in $cleanup_paths before calling).
cleanup_paths=${cleanup_paths:-}
pos_local_pid=
pos_local_data=
pos_local_log=

stop_pos_local() {
  if [[ -n "$pos_local_pid" ]]; then
    kill "$pos_local_pid" 2>/dev/null || true
    wait "$pos_local_pid" 2>/dev/null || true
  fi
  # shellcheck disable=SC2086 # a space-separated list of temporary paths
  rm -rf "$pos_local_data" "$pos_local_log" $cleanup_paths
}

start_pos_local() {
  local bin=$1
  pos_local_data=$(mktemp -d)
  pos_local_log=$(mktemp)
  trap stop_pos_local EXIT
  "$bin" serve --addr 127.0.0.1:0 --data-dir "$pos_local_data" >"$pos_local_log" 2>/dev/null &
  pos_local_pid=$!
  url=
  for _ in $(seq 1 100); do
    url=$(grep -o 'http://[0-9.:]*' "$pos_local_log" | head -1 || true)
    [[ -n "$url" ]] && return 0
    kill -0 "$pos_local_pid" 2>/dev/null || { echo "pos-local serve exited early" >&2; exit 1; }
    sleep 0.1
  done
  echo "pos-local serve did not start within 10 s" >&2
  exit 1
}
