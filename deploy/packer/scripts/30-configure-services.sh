#!/usr/bin/env bash
# Configure the services: gunicorn's unit and settings, the nginx site in front of it,
# both enabled so that an instance launched from the image serves from boot.
#
# The socket: gunicorn (user keras-fleet) creates /run/keras-fleet/gunicorn.sock with
# umask 007 in a directory only the keras-fleet group can enter; nginx's workers
# (www-data) join that group, so they, and no other user, can connect.
#
# Environment: MODEL_FILE, MODEL_NAME, MODEL_VERSION (see 20-install-app.sh).
set -o nounset -o errexit -o pipefail

app=/opt/keras-fleet
socket=/run/keras-fleet/gunicorn.sock

# The settings of api/config.py for this image; operators may edit this file (then
# `systemctl restart keras-fleet`).
install -d -m 0755 /etc/keras-fleet
cat > /etc/keras-fleet/keras-fleet.env <<ENV
MODEL_PATH=$app/models/${MODEL_FILE:?}
MODEL_NAME=${MODEL_NAME?}
MODEL_VERSION=${MODEL_VERSION:?}
GUNICORN_BIND=unix:$socket
TF_CPP_MIN_LOG_LEVEL=2
ENV

usermod --append --groups keras-fleet www-data
install -m 0644 "$app/deploy/systemd/keras-fleet.service" /etc/systemd/system/keras-fleet.service

# nginx's limits must match the app's: read them from the same settings, through the
# app's own config module, then render the same site file `make serve` renders.
limits=$(
    set -o allexport && . /etc/keras-fleet/keras-fleet.env &&
    "$app/venv/bin/python" -c 'from api.config import Config; c = Config.from_env(); print(c.max_body_bytes, c.timeout)'
)
read -r max_body_bytes timeout <<< "$limits"
"$app/venv/bin/python" "$app/scripts/render_nginx.py" "$app/deploy/nginx/keras-fleet.conf" \
    LISTEN=80 "UPSTREAM=unix:$socket" ACCESS_LOG=/var/log/nginx/keras-fleet.access.log \
    "MAX_BODY_BYTES=$max_body_bytes" "PROXY_TIMEOUT=$timeout" > /etc/nginx/sites-available/keras-fleet.conf
ln -sfn ../sites-available/keras-fleet.conf /etc/nginx/sites-enabled/keras-fleet.conf
# Debian's default site also claims port 80 as default_server.
rm -f /etc/nginx/sites-enabled/default

systemctl daemon-reload
systemctl enable keras-fleet.service nginx.service
