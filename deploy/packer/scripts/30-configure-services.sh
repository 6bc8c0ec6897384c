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
PROMETHEUS_MULTIPROC_DIR=/run/keras-fleet/prometheus
# Only the load balancer reaches the instance, always from the VPC's private addresses:
# believe its X-Forwarded-For, so rate limits apply per client, not per ALB node.
TRUSTED_PROXIES=10.0.0.0/8,172.16.0.0/12,192.168.0.0/16
RATE_LIMIT_EXEMPT=127.0.0.0/8
TF_CPP_MIN_LOG_LEVEL=2
ENV

usermod --append --groups keras-fleet www-data
install -m 0644 "$app/deploy/systemd/keras-fleet.service" /etc/systemd/system/keras-fleet.service

# nginx's limits must match the app's: render the same site file `make serve` renders,
# with values from the same settings (the env file above, read by api/config.py).
install -D -m 0644 "$app/deploy/nginx/keras-fleet-headers.conf" /etc/nginx/snippets/keras-fleet-headers.conf
(
    set -o allexport && . /etc/keras-fleet/keras-fleet.env && set +o allexport
    "$app/venv/bin/python" "$app/scripts/render_nginx.py" "$app/deploy/nginx/keras-fleet.conf" \
        --listen 80 --metrics-listen "${METRICS_PORT:-9101}" --upstream "unix:$socket" \
        --access-log /var/log/nginx/keras-fleet.access.log --error-log /var/log/nginx/error.log \
        --headers-file /etc/nginx/snippets/keras-fleet-headers.conf
) > /etc/nginx/sites-available/keras-fleet.conf
ln -sfn ../sites-available/keras-fleet.conf /etc/nginx/sites-enabled/keras-fleet.conf
# Debian's default site also claims port 80 as default_server.
rm -f /etc/nginx/sites-enabled/default

systemctl daemon-reload
systemctl enable keras-fleet.service nginx.service
