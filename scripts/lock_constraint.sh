#!/usr/bin/env bash
# Usage: scripts/lock_constraint.sh PYTHON LOCK
#
# Print pip's `--constraint LOCK` when PYTHON is the Python the lock was resolved for
# (its "# Resolved for Python X.Y" line): a lock pins wheels for one Python, and some of
# its versions need that Python. For another Python, say so on stderr and print nothing:
# pip then installs setup.py's ranges, resolved afresh, as before there was a lock.
set -o nounset -o errexit -o pipefail

python=$1 lock=$2
locked=$(sed -n 's/^# Resolved for Python \([0-9.]*\).*/\1/p' "$lock")
running=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$running" = "$locked" ]; then
    echo "--constraint $lock"
else
    echo "note: $lock pins Python $locked's packages; this is Python $running, so pip resolves setup.py's ranges afresh (make lock pins them for it)" >&2
fi
