# iapguard on Google Cloud, the Terraform way: the same resources
# cloudbuild.yaml creates (identities, custom role, topics and schema, the
# function's Cloud Run service, Eventarc triggers, sweep jobs), except the
# image build (var.image is built by cloudbuild.yaml or docker) and the
# dead-letter policy on the trigger subscriptions Eventarc owns (run
# deploy/scripts/dead-letter.sh after apply). See docs/deploy.md.
#
# Trigger definitions and the custom role are read from generated/, which
# `go test ./internal/deploy` keeps equal to eventarc/triggers.yaml and
# internal/iamperm. The module configures no provider; the caller does.
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}
