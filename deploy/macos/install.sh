#!/bin/sh
# Installs the Muster agent on macOS as a launchd daemon, as root:
#   sudo MUSTER_ENROLL_TOKEN=TOKEN ./install.sh --collector https://muster.example.org:8443 \
#       --ca-cert ca.pem [--binary ./muster-agent] [--token-file FILE]
# The token comes from --token-file or MUSTER_ENROLL_TOKEN, never from the
# command line, so it stays out of process lists (Jamf: a script parameter
# exported as MUSTER_ENROLL_TOKEN). Running it again is safe: an enrolled
# host is not enrolled again, and the daemon is reloaded with the new files.
set -eu

BIN=/usr/local/bin/muster-agent
STATE="/Library/Application Support/Muster/agent"
LOGS=/Library/Logs/Muster
PLIST=/Library/LaunchDaemons/org.muster.agent.plist
LABEL=org.muster.agent
HERE=$(cd "$(dirname "$0")" && pwd)

collector=${MUSTER_COLLECTOR:-}
ca_cert=
token_file=
binary="$HERE/muster-agent"

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --collector) collector=${2:?--collector needs a value}; shift 2 ;;
        --ca-cert) ca_cert=${2:?--ca-cert needs a value}; shift 2 ;;
        --token-file) token_file=${2:?--token-file needs a value}; shift 2 ;;
        --binary) binary=${2:?--binary needs a value}; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo): the daemon and its state folder belong to root"
[ -x "$binary" ] || die "no agent program at $binary (give --binary PATH)"

install -d -o root -g wheel -m 0755 /usr/local/bin
install -o root -g wheel -m 0755 "$binary" "$BIN"
install -d -o root -g wheel -m 0755 "$LOGS"
# The state folder holds the agent's private key: root only.
install -d -o root -g wheel -m 0700 "$STATE"

if [ -f "$STATE/agent.toml" ]; then
    echo "already enrolled ($STATE/agent.toml); not enrolling again"
else
    [ -n "$collector" ] || die "give --collector https://NAME:PORT (or MUSTER_COLLECTOR)"
    [ -n "$ca_cert" ] || die "give --ca-cert FILE: the collector's CA certificate"
    [ -r "$ca_cert" ] || die "cannot read the CA certificate $ca_cert"
    if [ -n "$token_file" ]; then
        [ -r "$token_file" ] || die "cannot read the token file $token_file"
        "$BIN" enroll --collector "$collector" --ca-cert "$ca_cert" \
            --token-file "$token_file" --state-dir "$STATE"
    elif [ -n "${MUSTER_ENROLL_TOKEN:-}" ]; then
        # enroll reads MUSTER_ENROLL_TOKEN itself.
        "$BIN" enroll --collector "$collector" --ca-cert "$ca_cert" --state-dir "$STATE"
    else
        die "give --token-file FILE or set MUSTER_ENROLL_TOKEN"
    fi
fi
"$BIN" config check --state-dir "$STATE"

install -o root -g wheel -m 0644 "$HERE/org.muster.agent.plist" "$PLIST"
plutil -lint "$PLIST" >/dev/null || die "$PLIST is not a valid property list"
# bootout fails when the daemon is not loaded: that is the first install.
launchctl bootout "system/$LABEL" 2>/dev/null || true
# A daemon disabled earlier (launchctl disable) would refuse to load.
launchctl enable "system/$LABEL"
launchctl bootstrap system "$PLIST"
echo "muster-agent installed and started; log: $LOGS/muster-agent.log"
echo "status: sudo launchctl print system/$LABEL"
