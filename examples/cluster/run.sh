#!/usr/bin/env bash
# jetsaga on a real cluster, on one machine: three NATS nodes (jetsaga
# server: nats-server built from the module, no downloads), two
# coordinators with R3 streams and the example participants, each a process
# of its own. It starts trips; while they run it kills a NATS node and a
# coordinator (SIGKILL) and restarts the node after 1 s (a fast restart),
# then kills another node and restarts it after 15 s. It checks that every
# saga ends as it should, and reports the longest interval in which trips
# were in flight and none advanced.
#
#   examples/cluster/run.sh            # 300 trips
#   SAGAS=1000 examples/cluster/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

SAGAS=${SAGAS:-300}
BASE=${BASE_PORT:-14300}
WORK=$(mktemp -d)
BIN=$WORK/jetsaga
declare -A PID

say() { printf '%s  %s\n' "$(date +%T)" "$*"; }
cleanup() {
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
	for f in "$WORK"/c*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say "building jetsaga"
go build -o "$BIN" ./cmd/jetsaga

ROUTES="nats-route://127.0.0.1:$((BASE + 11)),nats-route://127.0.0.1:$((BASE + 12)),nats-route://127.0.0.1:$((BASE + 13))"
URL="nats://127.0.0.1:$((BASE + 1)),nats://127.0.0.1:$((BASE + 2)),nats://127.0.0.1:$((BASE + 3))"
node() {
	"$BIN" server -dir "$WORK/n$1" -name "n$1" -port $((BASE + $1)) -cluster-port $((BASE + 10 + $1)) \
		-routes "$ROUTES" >"$WORK/n$1.log" 2>&1 &
	PID[n$1]=$!
}
say "starting a 3-node NATS cluster on ports $((BASE + 1))-$((BASE + 3))"
for i in 1 2 3; do node $i; done
for i in 1 2 3; do
	until grep -q "listening on" "$WORK/n$i.log"; do sleep 0.2; done
done

# A coordinator runs under a supervisor loop, as under systemd: when it
# dies (or cannot start while the cluster elects leaders) it is started
# again a second later.
coordinator() {
	(
		while :; do
			"$BIN" coordinator --server "$URL" --name "c$1" --replicas 3 --lease-ttl 3s --log-level warn >>"$WORK/c$1.log" 2>&1 &
			echo $! >"$WORK/c$1.pid"
			wait $! || true
			sleep 1
		done
	) &
	PID[sup$1]=$!
}
say "starting coordinators c1 and c2 (R3 streams) and the example participants"
coordinator 1
sleep 1 # c1 creates the topology; c2 joins it
coordinator 2
"$BIN" examples --server "$URL" --log-level warn >"$WORK/p.log" 2>&1 &
PID[p]=$!
# grep reads all of it: with -q it could stop early and, under pipefail, fail
# the pipeline on the status command's broken pipe.
until "$BIN" status --server "$URL" 2>/dev/null | grep "c2" >/dev/null; do sleep 0.3; done

start() {
	# Every 5th trip goes where there are no cars: it unwinds. A start that
	# fails while a node is down is retried; its key makes it start once.
	local dest=Lisbon
	if (($1 % 5 == 0)); then dest=Atlantis; fi
	until "$BIN" start --server "$URL" --timeout 5s -f examples/trip/trip.yaml --key "cluster-$1" \
		--params "{\"traveller\":\"t$1\",\"destination\":\"$dest\"}" >/dev/null 2>&1; do
		sleep 0.2
	done
}

say "starting $SAGAS trips"
(
	for i in $(seq 1 "$SAGAS"); do
		start "$i"
		echo "$i" >"$WORK/progress"
	done
) &
STARTER=$!
progress() { # the starter rewrites the file: read it whole, or read 0
	local n
	n=$(cat "$WORK/progress" 2>/dev/null || true)
	echo "${n:-0}"
}
until [ "$(progress)" -ge $((SAGAS / 3)) ]; do sleep 0.2; done
say "killing NATS node n2 and coordinator c1 (SIGKILL); c1's supervisor starts it again"
kill -9 "${PID[n2]}" "$(cat "$WORK/c1.pid")"
wait "${PID[n2]}" 2>/dev/null || true
sleep 1 # a fast restart: the node comes back while its peers still elect leaders
say "restarting n2 (same store) after 1 s, $(progress) starts"
node 2
# Another node may go down only once every stream has its three replicas
# again: with n2 still catching up, killing n3 would leave streams without
# a quorum, which R3 does not promise to survive.
go run ./examples/cluster/healthy --server "$URL" | while read -r line; do say "$line"; done
until [ "$(progress)" -ge $((2 * SAGAS / 3)) ]; do sleep 0.2; done
say "killing NATS node n3 (SIGKILL)"
kill -9 "${PID[n3]}"
wait "${PID[n3]}" 2>/dev/null || true
sleep 15 # two nodes of three carry on: every stream keeps a quorum
say "restarting n3 (same store) after 15 s, $(progress) starts"
node 3
wait "$STARTER"

# Count the trips that ended, not those still running: a failing list, or
# a start not decided yet, must not read as done.
say "waiting for every trip to end"
deadline=$((SECONDS + 300))
while :; do
	ended=$("$BIN" list --server "$URL" --limit 0 --json 2>/dev/null | grep -cE '"status": "(succeeded|unwound|stuck|abandoned)"' || true)
	[ "$ended" = "$SAGAS" ] && break
	if ((SECONDS > deadline)); then
		say "FAIL: only $ended of $SAGAS trips ended after 5 minutes"
		exit 1
	fi
	sleep 1
done

go run ./examples/cluster/stall --server "$URL" --count "$SAGAS" | while read -r line; do say "$line"; done
all=$("$BIN" list --server "$URL" --limit 0 --json)
ok=$(grep -c '"status": "succeeded"' <<<"$all" || true)
unwound=$(grep -c '"status": "unwound"' <<<"$all" || true)
other=$(grep -cE '"status": "(stuck|abandoned)"' <<<"$all" || true)
want_unwound=$((SAGAS / 5))
say "trips: $ok succeeded, $unwound unwound, $other stuck or abandoned (want $((SAGAS - want_unwound)), $want_unwound, 0)"
"$BIN" status --server "$URL" 2>&1 | head -12 || true
if [ "$ok" != $((SAGAS - want_unwound)) ] || [ "$unwound" != "$want_unwound" ] || [ "$other" != 0 ]; then
	say "FAIL"
	exit 1
fi
say "OK: every trip ended as it should through a node and a coordinator crash"
