#!/bin/sh
# The main job, as README.md's first command runs it: the prime checker on
# all cores, then the 20 flags downloaded by worker processes from a local
# flagserver (on a free port, stopped afterwards).
set -eu
bin=${1:?usage: demo.sh TOOLS_DIR}
"$bin/primes"
echo
log=$(mktemp)
"$bin/flagserver" --port 0 >"$log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
url=
for _ in $(seq 100); do
  url=$(sed -n 's|.*\(http://[0-9.]*:[0-9]*/flags\).*|\1|p' "$log" | head -n 1)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "demo: flagserver did not start" >&2; exit 1; }
"$bin/flags" -s "$url"
