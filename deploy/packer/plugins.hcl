# For Packer 1.7 and newer only. Packer 1.6.6 (Debian's, which CI uses) has amazon-ebs
# built in and rejects a required_plugins block, so this file's name does not end in
# .pkr.hcl and Packer does not load it. With a newer Packer:
#
#   cp deploy/packer/plugins.hcl deploy/packer/plugins.pkr.hcl && packer init deploy/packer

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.0"
    }
  }
}
