#!/usr/bin/env bash
# Installs what is missing, builds keel (Release), and runs a local 3-node cluster on 127.0.0.1
# until Ctrl-C, which stops every node gracefully.
#   KEEL_DATA=DIR      where the nodes keep their data (default: ./build/run-data)
#   KEEL_BASE_PORT=N   node i listens on N+i and serves HTTP on N+100+i (default: 7100)
#   KEEL_JOBS=N        parallel build jobs (default: the number of cores)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
keel_install_deps
jobs=${KEEL_JOBS:-$(nproc)}
build=build/release
data=${KEEL_DATA:-$PWD/build/run-data}
base=${KEEL_BASE_PORT:-7100}

echo "==== building (Release) in $build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEEL_BENCH=OFF -DKEEL_FAULTS=OFF >/dev/null
ninja -C "$build" -j "$jobs" keel-server keel

peers=""
cluster=""
for i in 1 2 3; do
  peers+="${peers:+,}$i=127.0.0.1:$((base + i))"
  cluster+="${cluster:+,}127.0.0.1:$((base + i))"
done
mkdir -p "$data"
pids=()
stop() {
  trap - INT TERM
  echo
  echo "==== stopping the cluster"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped; the data stays in $data (delete it to start a new cluster)"
  exit 0
}
trap stop INT TERM
for i in 1 2 3; do
  "$build/apps/keel-server" --id "$i" --data-dir "$data/n$i" --listen "127.0.0.1:$((base + i))" \
    --peers "$peers" --http "127.0.0.1:$((base + 100 + i))" --redis-listen "127.0.0.1:$((base + 200 + i))" \
    --quiet true \
    >>"$data/n$i.log" 2>&1 &
  pids+=($!)
done
sleep 1
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "a node failed to start; see $data/n*.log"; stop; }
done
keel="$build/apps/keel"
export KEEL_CLUSTER="$cluster"
cat <<MSG

==== a 3-node keel cluster is running (data and logs in $data)

  export KEEL_CLUSTER=$cluster
  $keel put greeting hello
  $keel get greeting
  $keel scan
  $keel status
  $keel bench --clients 16 --duration 5
  $keel --help

  metrics: http://127.0.0.1:$((base + 101))/metrics  (nodes 2, 3: ports $((base + 102)), $((base + 103)))
  status:  http://127.0.0.1:$((base + 101))/status
  redis:   redis-cli -p $((base + 201)) set greeting hello   (any node: ports $((base + 201))-$((base + 203)))

Press Ctrl-C to stop the cluster.
MSG
"$keel" status || true
wait
