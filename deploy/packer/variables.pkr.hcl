# The AMI recipe's inputs. Defaults build the demo model on real AWS; `make bake-ami`
# passes the model and version variables from its own (MODEL_PATH=..., etc.).

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region the build instance runs in and the AMI is registered in."
}

variable "instance_type" {
  type        = string
  default     = "t3.medium"
  description = "Build instance type. x86_64: the staged wheels are built for x86_64."
}

variable "model_path" {
  type        = string
  default     = "models/digits.keras"
  description = "Keras 3 .keras file baked into the image (relative to where packer runs)."
}

variable "model_name" {
  type        = string
  default     = ""
  description = "Name the model is served under; empty means the file's stem."
}

variable "model_version" {
  type        = string
  default     = "1"
  description = "Version the model reports (GET /v1/models/<name>)."
}

variable "app_version" {
  type        = string
  default     = "0.1.0"
  description = "keras-fleet version to install; the stage's wheelhouse must hold its wheel."
}

variable "git_commit" {
  type        = string
  default     = "unknown"
  description = "Commit the image is built from, for the AMI's tags."
}

variable "settings_digest" {
  type        = string
  default     = "defaults"
  description = "The AMI's Settings tag: the stage's settings-digest (make bake-ami SETTINGS=...), or defaults."
}

variable "stage_dir" {
  type        = string
  default     = "build/image"
  description = "Directory made by scripts/stage_image.sh: wheelhouse, deploy configs."
}

variable "manifest" {
  type        = string
  default     = "reports/packer-manifest.json"
  description = "Where the manifest post-processor writes the AMI id (`make roll` reads it)."
}

# --- Where Packer talks to and logs in. The defaults are real AWS; the offline test
# --- (tests/test_image.py) points them at moto_server and a local booted root.

variable "ec2_endpoint" {
  type        = string
  default     = ""
  description = "EC2 API endpoint; empty means AWS's own for the region."
}

variable "source_ami_owner" {
  type        = string
  default     = "136693071363"
  description = "Owner of the source AMI: Debian's official cloud images account."
}

variable "ssh_username" {
  type        = string
  default     = "admin"
  description = "Login user of the Debian cloud image."
}

variable "ssh_host" {
  type        = string
  default     = ""
  description = "Host to SSH to; empty means the build instance's address."
}

variable "ssh_port" {
  type        = number
  default     = 22
  description = "SSH port of the build instance."
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "Key to log in with; empty means a temporary key pair made for the build."
}
