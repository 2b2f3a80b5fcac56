#!/bin/bash
# Starts IRIS (iris-main) with the password of the predefined accounts taken from the compose
# secret iris_password (IRIS_PASSWORD in .env), so that no password is baked into the image
# or written in a file of the repository. iris-main --password-file applies it to the
# predefined accounts, CSPSystem included, which the Web Gateway signs in as.
set -euo pipefail

secret=${AISTACK_IRIS_PASSWORD_FILE:-/run/secrets/iris_password}
iris_main=${AISTACK_IRIS_MAIN:-/iris-main} # replaced by a double in tests/iris_offline

fail() {
    echo "aistack: $*" >&2
    exit 64
}

[[ -r $secret ]] || fail "no IRIS password: set IRIS_PASSWORD in .env (see .env.example)"
password=$(<"$secret")
[[ -n $password ]] || fail "IRIS_PASSWORD is empty: set it in .env (see .env.example)"
[[ $password != SYS ]] || fail "IRIS_PASSWORD must not be IRIS's default password"

# IRIS's default password pattern (3.32ANP) allows printable ASCII without spaces, at most 32.
acceptable() {
    local LC_ALL=C
    [[ $1 =~ ^[[:graph:]]{8,32}$ ]]
}
acceptable "$password" || fail "IRIS_PASSWORD must be 8 to 32 printable characters, no spaces"

# iris-main may delete or rename the file it reads: it gets a private copy (mode 600).
copy=$(mktemp)
printf '%s' "$password" >"$copy"
unset password
exec "$iris_main" --password-file "$copy" "$@"
