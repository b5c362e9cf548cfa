# Helpers for the side-by-side scripts: start a server that prints "listening on ADDR",
# read a process's CPU time, stop everything on exit.
pids=()
tmp=$(mktemp -d)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# start NAME COMMAND... : runs it in the background; sets ADDR and PID.
start() {
  local name=$1; shift
  # A name used before: its old "listening on" line must not be read as the new server's.
  rm -f "$tmp/$name.out" "$tmp/$name.err"
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 200); do
    if grep -q "listening on" "$tmp/$name.out" 2>/dev/null; then
      ADDR=$(sed -n 's/^listening on //p' "$tmp/$name.out" | head -1)
      return
    fi
    sleep 0.05
  done
  echo "$name did not start" >&2; cat "$tmp/$name.err" >&2; exit 1
}

# cpu_ticks PID : user + system CPU time in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# json_field JSON KEY : a top-level number from a one-line JSON object.
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
