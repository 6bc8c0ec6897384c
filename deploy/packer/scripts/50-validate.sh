#!/usr/bin/env bash
# Validate the image: assert, on the finished system, that an instance launched from it
# will serve. A failure here fails the bake, before any AMI is registered.
set -o nounset -o errexit -o pipefail

app=/opt/keras-fleet
fail() { echo "validate: $*" >&2; exit 1; }

nginx -t -q || fail "nginx rejects its configuration"
# The main settings 30-configure-services.sh edits into Debian's nginx.conf took.
config=$(nginx -T 2>/dev/null)
grep -q '^pcre_jit on;' <<<"$config" || fail "nginx.conf does not turn pcre_jit on"
grep -Eq '^\s*worker_connections 4096;' <<<"$config" || fail "nginx.conf keeps Debian's worker_connections"
systemd-analyze verify /etc/systemd/system/keras-fleet.service || fail "the keras-fleet unit is invalid"
for unit in keras-fleet.service nginx.service; do
    systemctl is-enabled --quiet "$unit" || fail "$unit is not enabled"
done
id -nG www-data | grep -qw keras-fleet || fail "nginx's user www-data cannot reach gunicorn's socket"

# The app imports, its settings parse and the model loads, as the service's user with
# the service's settings (API keys file included): what each gunicorn worker does at boot.
set -o allexport && . /etc/keras-fleet/keras-fleet.env && set +o allexport
[ -r "$MODEL_PATH" ] || fail "the model $MODEL_PATH is missing"
runuser -u keras-fleet -- env --chdir=/ HOME=/tmp "$app/venv/bin/python" - <<'PY' || fail "the app cannot start with these settings and this model"
from pathlib import Path
from api.app import load_model
from api.auth import read_keys_file
from api.config import Config
config = Config.from_env()
model = load_model(config)
print(f"validate: the app loads model {model.name!r} version {model.version}")
if config.api_keys_file:
    print(f"validate: {len(read_keys_file(Path(config.api_keys_file)))} API key(s) in {config.api_keys_file}")
PY

# What cleanup removed stays removed.
[ ! -s /etc/machine-id ] || fail "/etc/machine-id is not empty"
! compgen -G '/etc/ssh/ssh_host_*' >/dev/null || fail "SSH host keys are baked in"
echo "validate: the image is ready"
