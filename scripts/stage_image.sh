#!/usr/bin/env bash
# Stage what the image's provisioning installs, in one directory that the Packer
# template uploads and `make bake-local` copies, so both install exactly the same files:
#
#   STAGE/wheelhouse/   the keras-fleet wheel built from this checkout, and every
#                       dependency's wheel at PYTHON's versions (constraints.txt; the
#                       instance installs with --no-index)
#   STAGE/deploy/       the gunicorn config, nginx site template (and its headers) and systemd unit
#   STAGE/scripts/      render_nginx.py, which fills the site template on the instance
#   STAGE/settings.env  with a SETTINGS file: its checked lines (scripts/image_settings.py)
#   STAGE/api-keys      and the API keys file it names
#   STAGE/settings-digest  the AMI's Settings tag: the two files' digest, or "defaults"
#
# The model is not staged: the template uploads it from MODEL_PATH on its own.
#
#   scripts/stage_image.sh STAGE [PYTHON [SETTINGS]]
set -o nounset -o errexit -o pipefail

stage=${1:?usage: stage_image.sh STAGE [PYTHON [SETTINGS]]}
python=${2:-python3}
settings=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)

rm -rf "$stage"
mkdir -p "$stage/deploy/nginx" "$stage/deploy/systemd" "$stage/scripts"

# The production settings first: a typo fails here, before minutes of wheel building.
if [ -n "$settings" ]; then
    "$python" "$repo/scripts/image_settings.py" "$settings" "$stage" || { rm -rf "$stage"; exit 2; }
else
    echo defaults > "$stage/settings-digest"
fi

# Wheels for the instance's Python: Debian 12's python3 is 3.11 on x86_64, like the
# Python that builds them here (the template's source AMI is x86_64 too).
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "stage with a Python 3.11 (Debian 12 runs 3.11)"'
# Pinned to the versions of PYTHON's environment (the venv `make test` runs in, which
# `make setup` installs from requirements.lock): the image serves with exactly the
# packages the tests ran against, whatever the index has published since.
PIP_DISABLE_PIP_VERSION_CHECK=1 "$python" -m pip freeze --exclude-editable > "$stage/constraints.txt"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$python" -m pip wheel --quiet --wheel-dir "$stage/wheelhouse" \
    --constraint "$stage/constraints.txt" "$repo"

cp "$repo/deploy/gunicorn.conf.py" "$stage/deploy/"
cp "$repo/deploy/nginx/keras-fleet.conf" "$repo/deploy/nginx/keras-fleet-headers.conf" "$repo/deploy/nginx/render-site.sh" \
    "$stage/deploy/nginx/"
cp "$repo/deploy/systemd/keras-fleet.service" "$repo/deploy/systemd/nginx-keras-fleet.conf" "$stage/deploy/systemd/"
cp "$repo/scripts/render_nginx.py" "$stage/scripts/"
echo "staged the image's files in $stage ($(du -sh "$stage" | cut -f1))"
