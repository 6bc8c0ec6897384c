#!/usr/bin/env bash
# Render Keras Fleet's nginx site on the VM from /etc/keras-fleet/keras-fleet.env and
# this machine. Run when the image is baked, and again before every nginx start (a
# drop-in of nginx.service, deploy/systemd/nginx-keras-fleet.conf): settings that follow
# the core count, such as the cap on predictions in flight (MAX_IN_FLIGHT, twice
# gunicorn's workers x threads by default), then fit the instance type the image boots
# on, not the machine that baked it. A site that fails `nginx -t` is not kept.
set -o nounset -o errexit -o pipefail

app=/opt/keras-fleet
site=/etc/nginx/sites-available/keras-fleet.conf

set -o allexport && . /etc/keras-fleet/keras-fleet.env && set +o allexport
new=$(mktemp "$site.new.XXXXXX")
trap 'rm -f "$new" "$site.previous"' EXIT
"$app/venv/bin/python" "$app/scripts/render_nginx.py" "$app/deploy/nginx/keras-fleet.conf" \
    --listen 80 --metrics-listen "${METRICS_PORT:-9101}" --upstream "${GUNICORN_BIND:?}" \
    --access-log /var/log/nginx/keras-fleet.access.log --error-log /var/log/nginx/error.log \
    --headers-file /etc/nginx/snippets/keras-fleet-headers.conf > "$new"
chmod 0644 "$new"
[ ! -e "$site" ] || cp -p "$site" "$site.previous"
mv "$new" "$site"
if ! nginx -t -q; then
    [ ! -e "$site.previous" ] || mv "$site.previous" "$site"
    echo "render-site: the rendered site fails nginx -t; kept the previous one" >&2
    exit 1
fi
