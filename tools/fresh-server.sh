# Sourced by the benchmark scripts: starts `$server_bin serve` (default
# target/release/jitledger) on a fresh temporary data directory and 127.0.0.1:0 with a random
# bootstrap token, and sets $data, $server (its pid) and $url. The server is killed and the
# directory removed when the script exits.
start_fresh_server() {
    data=$(mktemp -d "${TMPDIR:-/tmp}/jitledger-bench.XXXXXX")
    export JITLEDGER_ADMIN_TOKEN="jlt._.bootstrap.$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    "${server_bin:-target/release/jitledger}" serve --data "$data/store" --listen 127.0.0.1:0 \
        >"$data/serve.out" 2>"$data/serve.err" &
    server=$!
    trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT INT TERM
    for _ in $(seq 100); do
        grep -q '^listening on ' "$data/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    url=$(sed -n 's/^listening on //p' "$data/serve.out")
    [ -n "$url" ] || { cat "$data/serve.err" >&2; echo "server did not start" >&2; exit 1; }
}
