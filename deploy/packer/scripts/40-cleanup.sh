#!/usr/bin/env bash
# Clean up what must not be baked into every instance: package caches and lists, the
# uploaded stage, SSH host keys and the machine id (each instance makes its own at
# first boot), the bake's logs and the login keys used to provision.
#
# Environment: STAGE_DIR (see 20-install-app.sh).
set -o nounset -o errexit -o pipefail

apt-get clean
rm -rf /var/lib/apt/lists/*
rm -rf "${STAGE_DIR:?}"

# cloud-init regenerates the host keys and reruns its first-boot modules on an instance
# whose instance data it does not find.
rm -f /etc/ssh/ssh_host_*
if command -v cloud-init >/dev/null; then
    cloud-init clean --logs
fi
# An empty machine-id makes systemd generate a new one at boot (a missing file would not).
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id

# The bake's logs and shell history.
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
find /var/log -type f -exec truncate -s 0 {} +
rm -f /root/.bash_history /home/*/.bash_history
# The provisioning key (Packer's temporary key pair) has no business in the image.
rm -f /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys
