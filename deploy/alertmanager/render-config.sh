#!/bin/sh
# Usage: render-config.sh TEMPLATE ALERTMANAGER [ARGS...]
# Writes TEMPLATE with ${ALERT_WEBHOOK_URL} replaced by its value, then runs
# `ALERTMANAGER ARGS... --config.file=<rendered>`. awk's index/substr, not sed or gsub:
# a URL's `&`, `|` or `#` must arrive unchanged.
set -eu
: "${ALERT_WEBHOOK_URL:?set ALERT_WEBHOOK_URL to the webhook that receives the alerts}"
template="$1"
shift
rendered="${ALERTMANAGER_RENDERED_CONFIG:-/tmp/alertmanager.yml}"
umask 077
awk -v url="$ALERT_WEBHOOK_URL" '{
    marker = "${ALERT_WEBHOOK_URL}"
    i = index($0, marker)
    if (i) $0 = substr($0, 1, i - 1) url substr($0, i + length(marker))
    print
}' "$template" > "$rendered"
exec "$@" --config.file="$rendered"
