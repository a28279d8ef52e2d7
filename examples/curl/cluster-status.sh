#!/usr/bin/env bash
# What one node knows: ./cluster-status.sh
# /v1/cluster: this node, its incarnation, the cluster view and its members,
# the coordinator, whether it is in the primary component.
# /v1/groups: the groups (patterns) with their views and counters.
# /readyz: 200 in a primary view, 503 otherwise.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
echo "# cluster"
curl --silent --show-error --fail "$url/v1/cluster"
echo "# groups"
curl --silent --show-error --fail "$url/v1/groups"
echo "# ready"
curl --silent --show-error --write-out '(HTTP %{http_code})\n' "$url/readyz"
