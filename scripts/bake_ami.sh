#!/usr/bin/env bash
# Bake the AMI on AWS (`make bake-ami`): check that credentials are configured, validate
# the template, build it with Packer's progress shown, print the new AMI id.
#
#   scripts/bake_ami.sh MANIFEST [packer -var arguments...]
#
# AWS_CREDENTIALS_CHECK=no skips the credentials check (an instance role, which only
# the instance metadata service can confirm).
set -o nounset -o errexit -o pipefail

manifest=${1:?usage: bake_ami.sh MANIFEST [-var name=value ...]}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
template=$repo/deploy/packer

# The sources Packer's AWS SDK reads, checked without a network call.
has_credentials() {
    [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ -n "${AWS_SECRET_ACCESS_KEY:-}" ] && return 0
    [ -n "${AWS_PROFILE:-}" ] && return 0
    [ -s "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ] && return 0
    [ -s "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ] && return 0
    [ -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ] && return 0
    [ -n "${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}" ] && return 0
    return 1
}

if [ "${AWS_CREDENTIALS_CHECK:-yes}" != no ] && ! has_credentials; then
    cat >&2 <<'MSG'
bake-ami: no AWS credentials found. Packer needs them to launch the build instance and
register the AMI. Provide one of:
  - AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if temporary)
  - AWS_PROFILE=name, with the profile in ~/.aws/credentials or ~/.aws/config
  - a ~/.aws/credentials or ~/.aws/config file with a [default] profile (or SSO)
  - AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (CI with OIDC)
On an EC2 instance with a role: make bake-ami AWS_CREDENTIALS_CHECK=no
MSG
    exit 2
fi

# Packer's update check calls HashiCorp; a bake has no use for it.
export CHECKPOINT_DISABLE=1
mkdir -p "$(dirname "$manifest")"
echo "bake-ami: packer validate"
packer validate "$@" "$template"
echo "bake-ami: packer build (about 10 minutes on AWS)"
packer build -var "manifest=$manifest" "$@" "$template"
ami=$(python3 "$repo/scripts/packer_manifest.py" "$manifest")
echo "bake-ami: the new AMI is $ami (recorded in $manifest for make roll)"
