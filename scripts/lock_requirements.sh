#!/usr/bin/env bash
# Usage: scripts/lock_requirements.sh PYTHON APP_LOCK IAC_LOCK IAC_TOOL...
#
# Resolve the project's packages afresh and pin every one: setup.py's `.[test]` (which
# holds every extra's packages) into APP_LOCK, the template scanners (IAC_TOOL..., kept
# apart because checkov pins boto3 exactly) into IAC_LOCK. `make setup` and the IaC venv
# install through these files as pip constraints, so a fresh clone, CI and the image's
# wheelhouse get the versions the last `make lock` chose, not whatever the index offers
# that day. Run it (as `make lock`) after changing setup.py or IAC_TOOLS, then `make test`.
set -o nounset -o errexit -o pipefail

python=$1 app_lock=$2 iac_lock=$3
shift 3
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$repo/build/lock
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

# fresh_venv DIR PIP_ARGS...: a new venv at DIR with PIP_ARGS installed, nothing else.
fresh_venv() {
    local dir=$1
    shift
    "$python" -m venv "$dir"
    "$dir/bin/pip" install -q "$@"
}

# write_lock VENV LOCK WHAT: VENV's packages (the project's editable install left out) as LOCK.
write_lock() {
    {
        echo "# Written by \`make lock\` (scripts/lock_requirements.sh) from a fresh resolve;"
        echo "# do not edit by hand. Every package of $3, pinned."
        echo "# Resolved for Python $("$1/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') (scripts/lock_constraint.sh reads this line)."
        "$1/bin/pip" freeze --all --exclude pip --exclude-editable  # setuptools and wheel too: some packages need them
    } > "$2.tmp"
    mv "$2.tmp" "$2"
    echo "wrote $2 ($(grep -c '==' "$2") packages)"
}

fresh_venv "$work/app" -e "$repo[test]"
write_lock "$work/app" "$app_lock" "\`make setup\`'s venv (setup.py's .[test])"
fresh_venv "$work/iac" "$@"
write_lock "$work/iac" "$iac_lock" "the template scanners' venv (IAC_TOOLS)"
