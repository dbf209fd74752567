#!/usr/bin/env bash
# Enables the APIs iapguard uses: in DEPLOY_PROJECT those of the deployment
# (Cloud Run, Eventarc, Pub/Sub, Cloud Scheduler, Artifact Registry, Cloud
# Build, IAM) and those the function calls, whose quota is charged to the
# function's own project (Cloud Asset Inventory included: sweeps and
# whole-project replays search it, docs/orgwide.md); in every allowlisted project the IAP API, which
# the IAP service agent and the IAP toggle need (projects under the scope's
# folder entries included: lib.sh expand_folders); with DEPLOY_SCOPE_SECRET
# Secret Manager in DEPLOY_PROJECT.
#
# The caller needs roles/serviceusage.serviceUsageAdmin, and with folder
# entries roles/browser on each listed folder (to find its projects).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT
resolve_allowlist
expand_folders

log "enabling APIs in $DEPLOY_PROJECT"
gcloud services enable --project="$DEPLOY_PROJECT" \
  run.googleapis.com eventarc.googleapis.com pubsub.googleapis.com \
  cloudscheduler.googleapis.com artifactregistry.googleapis.com cloudbuild.googleapis.com \
  iam.googleapis.com logging.googleapis.com compute.googleapis.com \
  iap.googleapis.com serviceusage.googleapis.com cloudasset.googleapis.com
if [[ -n "${DEPLOY_SCOPE_SECRET:-}" ]]; then
  # The scope in a secret (service.sh).
  gcloud services enable --project="$DEPLOY_PROJECT" secretmanager.googleapis.com
fi
for project in "${ALLOWLIST[@]}" "${FOLDER_PROJECTS[@]}"; do
  if [[ "$project" != "$DEPLOY_PROJECT" ]]; then
    log "enabling the IAP API in $project"
    gcloud services enable --project="$project" iap.googleapis.com
  fi
done
