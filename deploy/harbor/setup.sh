#!/usr/bin/env bash
# Sets up oxcart's project in Harbor (2.10): the `production` project, scanning every
# push with Trivy and refusing pulls of images with a CRITICAL vulnerability; the `ci`
# robot account the release workflow pushes with (90 days, push and pull in that project
# only); and a webhook for scan results. Run it again: what exists is left as it is.
#
#   HARBOR_URL=https://harbor.example.com HARBOR_ADMIN=admin HARBOR_PASSWORD=… deploy/harbor/setup.sh
#
# The admin password comes from the environment, never from this file. The robot's
# secret is printed once: store it as the HARBOR_ROBOT_TOKEN secret of the repository.
set -euo pipefail
cd "$(dirname "$0")"
: "${HARBOR_URL:?set HARBOR_URL}" "${HARBOR_ADMIN:?set HARBOR_ADMIN}" "${HARBOR_PASSWORD:?set HARBOR_PASSWORD}"
api="$HARBOR_URL/api/v2.0"

# One call: fails on an HTTP error, gives up after 30 s.
call() {
    local method="$1" path="$2" body="${3:-}"
    curl --fail-with-body --silent --show-error --max-time 30 \
        --user "$HARBOR_ADMIN:$HARBOR_PASSWORD" \
        -X "$method" -H 'content-type: application/json' \
        ${body:+--data @"$body"} "$api$path"
}

exists() {
    curl --silent --output /dev/null --max-time 30 --write-out '%{http_code}' \
        --user "$HARBOR_ADMIN:$HARBOR_PASSWORD" "$api$1" | grep -q '^200$'
}

if exists "/projects/production"; then
    echo "project production: exists"
else
    call POST /projects project.json
    echo "project production: created"
fi

if call GET "/robots?q=name%3Drobot%24production%2Bci" | grep -q '"name"'; then
    echo "robot account ci: exists (rotate its secret in Harbor's UI or with PATCH /robots/{id})"
else
    echo "robot account ci: created; its secret, shown once:"
    call POST /robots robot.json
    echo
fi

if call GET /projects/production/webhook/policies | grep -q '"scan-results"'; then
    echo "webhook scan-results: exists"
else
    call POST /projects/production/webhook/policies webhook.json
    echo "webhook scan-results: created"
fi
