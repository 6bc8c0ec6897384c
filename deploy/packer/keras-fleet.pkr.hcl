# The Keras Fleet AMI: the official Debian 12 image plus the model server (nginx in
# front of gunicorn, both started by systemd at boot).
#
#   packer validate deploy/packer && packer build deploy/packer   (or: make bake-ami)
#
# Written for Packer 1.6.6 (Debian's packer), which has amazon-ebs built in. Newer
# Packer needs the plugin declared: see plugins.hcl beside this file.

locals {
  # AMI names must be unique in the account: the build time makes them so.
  build_time = formatdate("YYYYMMDDhhmmss", timestamp())
  model_file = basename(var.model_path)
  model_name = var.model_name != "" ? var.model_name : trimsuffix(local.model_file, ".keras")
  # Where the instance receives the stage and the model. /var/tmp, not /tmp: a tmpfs
  # /tmp may be gone before the scripts run.
  stage_on_instance = "/var/tmp/keras-fleet-image"
  tags = {
    Name          = "keras-fleet-${local.model_name}-${var.model_version}"
    Project       = "keras-fleet"
    Model         = local.model_name
    ModelVersion  = var.model_version
    AppVersion    = var.app_version
    GitCommit     = var.git_commit
    Settings      = var.settings_digest
    SourceAMI     = "{{ .SourceAMI }}"
    SourceAMIName = "{{ .SourceAMIName }}"
  }
}

source "amazon-ebs" "debian12" {
  region        = var.region
  instance_type = var.instance_type

  # The newest official Debian 12 (bookworm) image: Debian's own account, amd64, EBS.
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  ami_name        = "keras-fleet-${local.model_name}-${var.model_version}-${local.build_time}"
  ami_description = "Keras Fleet ${var.app_version}: model ${local.model_name} version ${var.model_version} (commit ${var.git_commit})"
  tags            = local.tags
  snapshot_tags   = local.tags
  run_tags        = merge(local.tags, { Name = "keras-fleet-bake" })

  custom_endpoint_ec2 = var.ec2_endpoint

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_host             = var.ssh_host
  ssh_port             = var.ssh_port
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "10m"
}

build {
  sources = ["source.amazon-ebs.debian12"]

  # The stage (wheelhouse, configs) and the model, where the scripts expect them.
  provisioner "shell" {
    inline = ["mkdir -p ${local.stage_on_instance}/model"]
  }
  provisioner "file" {
    source      = "${var.stage_dir}/"
    destination = local.stage_on_instance
  }
  provisioner "file" {
    source      = var.model_path
    destination = "${local.stage_on_instance}/model/${local.model_file}"
  }

  # The ordered provisioning scripts, as root. `make bake-local` runs the same files,
  # in the same (file name) order, with the same environment.
  provisioner "shell" {
    # (Packer 1.6.6's fileset finds nothing under a relative base: hence abspath.)
    scripts         = [for script in sort(fileset(abspath(path.root), "scripts/*.sh")) : "${path.root}/${script}"]
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "STAGE_DIR=${local.stage_on_instance}",
      "APP_VERSION=${var.app_version}",
      "MODEL_FILE=${local.model_file}",
      "MODEL_NAME=${var.model_name}",
      "MODEL_VERSION=${var.model_version}",
    ]
  }

  # `make roll` reads the newest build's artifact_id ("region:ami-...") from here.
  post-processor "manifest" {
    output     = var.manifest
    strip_path = true
    custom_data = {
      model         = local.model_name
      model_version = var.model_version
      app_version   = var.app_version
      git_commit    = var.git_commit
    }
  }
}
