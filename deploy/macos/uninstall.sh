#!/bin/sh
# Stops and removes the Muster agent's launchd daemon and program, as root.
# The state folder (the agent's identity and spool) is kept unless --purge:
# a reinstall then carries on as the same host.
set -eu
STATE="/Library/Application Support/Muster"
LABEL=org.muster.agent
PLIST=/Library/LaunchDaemons/org.muster.agent.plist

[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root (sudo)" >&2; exit 1; }
launchctl bootout "system/$LABEL" 2>/dev/null || true
rm -f "$PLIST" /usr/local/bin/muster-agent
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$STATE" /Library/Logs/Muster
    echo "muster-agent removed, with its state and logs"
else
    echo "muster-agent removed; state kept in $STATE (--purge deletes it)"
fi
