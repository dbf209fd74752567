#!/usr/bin/env bash
# Creates the Artifact Registry Docker repository DEPLOY_REPOSITORY (default
# iapguard) in DEPLOY_REGION if it is missing; the enforcer image is pushed
# there.
#
# The caller needs roles/artifactregistry.admin (or the repository to exist
# and roles/artifactregistry.writer for the push).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT DEPLOY_REGION

repository=${DEPLOY_REPOSITORY:-iapguard}
if gcloud artifacts repositories describe "$repository" --project="$DEPLOY_PROJECT" \
  --location="$DEPLOY_REGION" >/dev/null 2>&1; then
  log "repository $repository exists"
else
  log "creating repository $repository in $DEPLOY_REGION"
  gcloud artifacts repositories create "$repository" --project="$DEPLOY_PROJECT" \
    --location="$DEPLOY_REGION" --repository-format=docker \
    --description="iapguard enforcer images" >/dev/null
fi
