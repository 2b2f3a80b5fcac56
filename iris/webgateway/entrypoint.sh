#!/bin/bash
# Starts the Web Gateway with CSP.ini (next to this script) plus the CSPSystem password from
# the compose secret iris_password: the password is written only into the copy staged here,
# inside the container, never into a file of the repository. The gateway copies the staged
# file into place (ISC_CSP_INI_FILE) and merges later changes of it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
secret=${AISTACK_IRIS_PASSWORD_FILE:-/run/secrets/iris_password}
stage=${AISTACK_CSP_STAGE_DIR:-/tmp/aistack-webgateway}
start=${AISTACK_WEBGATEWAY_START:-/startWebGateway} # replaced by a double in tests/iris_offline

if [[ ! -s $secret ]]; then
    echo "aistack: no IRIS password: set IRIS_PASSWORD in .env (see .env.example)" >&2
    exit 64
fi

umask 077
mkdir -p "$stage"
# After Username= in [LOCAL], the server section of the IRIS instance. ENVIRON, not awk -v,
# which would interpret backslashes in the password.
PASSWORD=$(<"$secret") awk '
    /^\[/ { section = $0 }
    { print }
    section == "[LOCAL]" && /^Username=/ { print "Password=" ENVIRON["PASSWORD"] }
' "$here/CSP.ini" >"$stage/CSP.ini"

export ISC_CSP_INI_FILE=$stage/CSP.ini
exec "$start" "$@"
