#!/usr/bin/env bash
# Build a fresh Debian 12 root file system that stands in for the official Debian 12
# AMI: debootstrap from Debian's packages, plus what the cloud image has and the
# recipe relies on (systemd as init, sshd, sudo and the "admin" user that Packer logs
# in as). scripts/bake_local.py caches the result, keyed on this file's content: any
# change here (the package list included) builds a new base.
#
#   scripts/bootstrap_debian.sh ROOT [MIRROR]
set -o nounset -o errexit -o pipefail

root=${1:?usage: bootstrap_debian.sh ROOT [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}

# minbase keeps the root small; these are the packages an instance of the cloud image
# has that the recipe or the local boot needs.
packages=systemd,systemd-sysv,dbus,openssh-server,sudo
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror"

# The cloud image's package sources, so apt-get inside sees what it sees on AWS.
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# A name of its own that resolves (cloud-init writes /etc/hosts on AWS; sudo warns
# about a hostname it cannot resolve). debootstrap copied the host's otherwise.
echo keras-fleet-image > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tkeras-fleet-image\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"

# The cloud image's login user: passwordless sudo, key-only SSH (cloud-init installs
# the key on AWS; the local boot writes it before booting).
chroot "$root" useradd --create-home --shell /bin/bash admin
echo 'admin ALL=(ALL) NOPASSWD:ALL' > "$root/etc/sudoers.d/90-admin"
chmod 0440 "$root/etc/sudoers.d/90-admin"

# The local stand-in shares the host's network: its sshd must never listen beyond
# loopback, and only with keys. The port is chosen per boot (sshd_config.d/port.conf).
cat > "$root/etc/ssh/sshd_config.d/local-standin.conf" <<'SSHD'
ListenAddress 127.0.0.1
PasswordAuthentication no
SSHD

# Nothing is cached in the base but the packages' files.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
