#!/usr/bin/env bash
# Shared by the deploy/scripts/*.sh steps; sourced, not run. The names below
# are part of the deployment contract: internal/deploy's tests check them
# against the Go constants, eventarc/triggers.yaml and the Terraform module.
#
# Inputs (environment):
#   DEPLOY_PROJECT     project that runs the function (required)
#   DEPLOY_REGION      region of the function (required by most steps)
#   IAPGUARD_PROJECTS  allowlist, comma-separated project ids (default: DEPLOY_PROJECT)
# shellcheck disable=SC2034 # the constants are used by the scripts that source this file
set -euo pipefail

readonly ENTRY_POINT=EnforceIAP
readonly OUTCOMES_TOPIC=iapguard-outcomes
readonly REPLAY_TOPIC=iapguard-replay
readonly DEAD_LETTER_TOPIC=iapguard-dead-letter
readonly DEAD_LETTER_HOLD=iapguard-dead-letter-hold
readonly OUTCOME_SCHEMA=iapguard-outcome-v1
readonly ENFORCER_ACCOUNT=iapguard-enforcer
readonly TRIGGER_ACCOUNT=iapguard-trigger
readonly ENFORCER_ROLE=iapguardEnforcer
readonly SWEEP_JOB_PREFIX=iapguard-sweep-

# REPO_ROOT is the repository root (the scripts live in deploy/scripts).
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly REPO_ROOT

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# require VAR...: fail unless every named variable is set and not empty.
require() {
  local v
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || die "$v is not set (see docs/deploy.md)"
  done
}

# account_email ID: the email of service account ID in DEPLOY_PROJECT.
account_email() { printf '%s@%s.iam.gserviceaccount.com\n' "$1" "$DEPLOY_PROJECT"; }

# allowlist: the projects iapguard enforces in, one per line, from
# IAPGUARD_PROJECTS (commas, spaces allowed) or DEPLOY_PROJECT alone.
allowlist() {
  local raw=${IAPGUARD_PROJECTS:-} p
  if [[ -z "${raw//[, ]/}" ]]; then
    printf '%s\n' "$DEPLOY_PROJECT"
    return
  fi
  for p in ${raw//,/ }; do
    printf '%s\n' "$p"
  done
}

# project_number PROJECT: the project's number.
project_number() { gcloud projects describe "$1" --format='value(projectNumber)'; }

# pubsub_agent PROJECT: the Pub/Sub service agent of PROJECT.
pubsub_agent() { printf 'service-%s@gcp-sa-pubsub.iam.gserviceaccount.com\n' "$(project_number "$1")"; }
