#!/usr/bin/env bash
# Install the app: the wheel built from this repo and its dependencies, from the
# uploaded wheelhouse (no index: the image holds exactly what was staged), into a
# virtualenv under /opt/keras-fleet; then the configs the services read and the model.
# Everything under /opt/keras-fleet belongs to root: the service can read its code and
# model, never change them.
#
# Environment (set by the Packer template or scripts/bake_local.py):
#   STAGE_DIR    where the stage was uploaded (wheelhouse/, deploy/, scripts/, model/)
#   APP_VERSION  the keras-fleet version to install (the wheel in the wheelhouse)
#   MODEL_FILE   the model's file name under STAGE_DIR/model/
set -o nounset -o errexit -o pipefail

stage=${STAGE_DIR:?}
app=/opt/keras-fleet

# The unprivileged user gunicorn runs as: no login, no home of its own.
id -u keras-fleet >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir "$app" --no-create-home --shell /usr/sbin/nologin keras-fleet

# A fresh virtualenv each time, so the image never keeps packages of an earlier install.
rm -rf "$app/venv"
python3 -m venv "$app/venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$app/venv/bin/pip" install --quiet --no-cache-dir \
    --no-index --find-links "$stage/wheelhouse" "keras-fleet==${APP_VERSION:?}"

# The same gunicorn config and nginx site template that `make serve` uses.
install -D -m 0644 "$stage/deploy/gunicorn.conf.py" "$app/deploy/gunicorn.conf.py"
install -D -m 0644 "$stage/deploy/nginx/keras-fleet.conf" "$app/deploy/nginx/keras-fleet.conf"
install -D -m 0644 "$stage/deploy/nginx/keras-fleet-headers.conf" "$app/deploy/nginx/keras-fleet-headers.conf"
install -D -m 0755 "$stage/deploy/nginx/render-site.sh" "$app/deploy/nginx/render-site.sh"
install -D -m 0644 "$stage/deploy/systemd/keras-fleet.service" "$app/deploy/systemd/keras-fleet.service"
install -D -m 0644 "$stage/deploy/systemd/nginx-keras-fleet.conf" "$app/deploy/systemd/nginx-keras-fleet.conf"
install -D -m 0755 "$stage/scripts/render_nginx.py" "$app/scripts/render_nginx.py"

install -D -m 0644 "$stage/model/${MODEL_FILE:?}" "$app/models/$MODEL_FILE"
