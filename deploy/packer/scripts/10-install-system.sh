#!/usr/bin/env bash
# Install the system packages the server needs: Python's venv (Debian's python3 runs
# the app's virtualenv) and nginx. Applies pending updates first, so every bake starts
# from a patched base, whatever the age of the source AMI.
set -o nounset -o errexit -o pipefail

export DEBIAN_FRONTEND=noninteractive

# Services must not start while the image is built: they start at boot, from the final
# configuration. (nginx would otherwise serve its default site during the bake.)
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

apt-get update -qq
apt-get upgrade -y -qq
apt-get install -y -qq --no-install-recommends python3-venv nginx
