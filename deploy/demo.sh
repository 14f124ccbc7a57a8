#!/usr/bin/env bash
# Muster's main job on one machine: build, start a collector with its
# embedded SQLite store, enroll this machine's agent, check in once, and
# print the fleet. A second agent reports a sample Linux image (made here)
# on which Kaspersky Endpoint Security is installed, so a detection and a
# ban show up even on a machine that runs no security product.
#
#   deploy/demo.sh [DIR]      DIR keeps the collector and agents (default: a temp folder)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building (cargo build --release; the first build takes a few minutes)"
cargo build --release --bins -q
bin=$PWD/target/release

work=${1:-$(mktemp -d -t muster-demo.XXXXXX)}
mkdir -p "$work"
port=${MUSTER_DEMO_PORT:-$((20000 + RANDOM % 20000))}
url="https://localhost:$port"

pid=
cleanup() { if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

echo "== muster-collector init --data-dir $work/collector"
"$bin/muster-collector" init --data-dir "$work/collector" --server-name localhost

echo "== muster-collector serve --listen 127.0.0.1:$port (log: $work/collector.log)"
"$bin/muster-collector" serve --data-dir "$work/collector" --listen "127.0.0.1:$port" >"$work/collector.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/collector.log"; exit 1; }
  sleep 0.1
done

echo "== enroll this machine's agent and check in"
token=$("$bin/muster-collector" token create --data-dir "$work/collector" --uses 2 --expires 1h | tail -1)
"$bin/muster-agent" enroll --collector "$url" --token "$token" --ca-cert "$work/collector/ca.pem" --state-dir "$work/agent"
"$bin/muster-agent" run --once --state-dir "$work/agent"

echo "== a second agent reports a sample image with Kaspersky Endpoint Security installed"
img=$work/sample-image
mkdir -p "$img/etc" "$img/var/lib/dpkg" "$img/lib/systemd/system" "$img/etc/systemd/system/multi-user.target.wants"
echo "sample-kesl-host" >"$img/etc/hostname"
printf 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\n' >"$img/etc/os-release"
printf 'Package: kesl\nStatus: install ok installed\nVersion: 12.1.0.1297\n\nPackage: klnagent64\nStatus: install ok installed\nVersion: 15.0.0.12912\n\n' >"$img/var/lib/dpkg/status"
printf '[Service]\nExecStart=/opt/kaspersky/kesl/bin/kesl\n[Install]\nWantedBy=multi-user.target\n' >"$img/lib/systemd/system/kesl.service"
ln -sf /lib/systemd/system/kesl.service "$img/etc/systemd/system/multi-user.target.wants/kesl.service"
"$bin/muster-agent" enroll --collector "$url" --token "$token" --ca-cert "$work/collector/ca.pem" --state-dir "$work/agent-image"
"$bin/muster-agent" run --once --state-dir "$work/agent-image" --root "$img"

op=(--collector "$url" --identity "$work/collector/operator")
echo
echo "== muster summary"
"$bin/muster" "${op[@]}" summary
echo
echo "== muster hosts"
"$bin/muster" "${op[@]}" hosts
echo
echo "Everything is in $work. Try: $bin/muster ${op[*]} host ID"
