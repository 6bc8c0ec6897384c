#!/usr/bin/env bash
# Configure the services: gunicorn's unit and settings, the nginx site in front of it,
# both enabled so that an instance launched from the image serves from boot.
#
# The socket: gunicorn (user keras-fleet) creates /run/keras-fleet/gunicorn.sock with
# umask 007 in a directory only the keras-fleet group can enter; nginx's workers
# (www-data) join that group, so they, and no other user, can connect.
#
# Environment: STAGE_DIR, MODEL_FILE, MODEL_NAME, MODEL_VERSION (see 20-install-app.sh).
set -o nounset -o errexit -o pipefail

stage=${STAGE_DIR:?}
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
# The production settings of the bake (make bake-ami SETTINGS=..., checked when staged):
# after the defaults above, so that theirs win (systemd and the shell take the last).
if [ -f "$stage/settings.env" ]; then
    cat "$stage/settings.env" >> /etc/keras-fleet/keras-fleet.env
fi
rm -f /etc/keras-fleet/api-keys
if [ -f "$stage/api-keys" ]; then
    # Hashes only; readable by the service (its group), not by other users.
    install -m 0640 -o root -g keras-fleet "$stage/api-keys" /etc/keras-fleet/api-keys
fi

usermod --append --groups keras-fleet www-data
install -m 0644 "$app/deploy/systemd/keras-fleet.service" /etc/systemd/system/keras-fleet.service

# nginx's limits must match the app's: the site is rendered from the same template
# `make serve` renders, with values from the same settings (the env file above, read by
# api/config.py), now and again before each nginx start on the instance (the drop-in),
# where the core count, and so gunicorn's workers, may differ from this machine's.
install -D -m 0644 "$app/deploy/nginx/keras-fleet-headers.conf" /etc/nginx/snippets/keras-fleet-headers.conf
install -D -m 0644 "$app/deploy/systemd/nginx-keras-fleet.conf" /etc/systemd/system/nginx.service.d/keras-fleet.conf
ln -sfn ../sites-available/keras-fleet.conf /etc/nginx/sites-enabled/keras-fleet.conf
# Debian's default site also claims port 80 as default_server.
rm -f /etc/nginx/sites-enabled/default
# nginx's main settings as `make serve` and `make bench` run them (deploy/nginx/nginx.conf),
# in Debian's own nginx.conf: regular expressions compiled to machine code (off in
# Debian's), and 4096 connections a worker (Debian's 768 would cap a busy instance).
sed -i -e 's/^\(\s*worker_connections\)\s\+[0-9]\+;/\1 4096;/' /etc/nginx/nginx.conf
grep -q '^pcre_jit ' /etc/nginx/nginx.conf || sed -i '/^worker_processes /a pcre_jit on;' /etc/nginx/nginx.conf
"$app/deploy/nginx/render-site.sh"

systemctl daemon-reload
systemctl enable keras-fleet.service nginx.service
