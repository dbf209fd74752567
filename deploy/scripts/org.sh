#!/usr/bin/env bash
# The organisation-wide path (docs/deploy.md, "One deployment for many
# projects"): one function guards every project in scope, fed by an
# aggregated log sink instead of per-project Eventarc triggers.
#   - the custom role iapguardEnforcer (deploy/iam/iapguard-enforcer.yaml,
#     generated from internal/iamperm) defined once in the organisation
#     DEPLOY_ORGANIZATION, and granted to iapguard-enforcer at
#     DEPLOY_SINK_PARENT (folders/ID or organizations/ID; default the
#     organisation), so it holds in every project below;
#   - the log sink iapguard-audit on DEPLOY_SINK_PARENT with
#     --include-children, routing the Admin Activity entries of the methods in
#     eventarc/triggers.yaml (the filter in DEPLOY_LOG_FILTER_FILE, rendered
#     by `iapctl deploy triggers --format=log-filter`) to the replay topic in
#     DEPLOY_PROJECT, whose trigger delivers them to the function;
#   - roles/pubsub.publisher on that topic for the sink's writer identity;
#   - for each folder entry folders/N of IAPGUARD_PROJECTS: that role (unless
#     N is the sink's parent, granted above) and roles/browser for
#     iapguard-enforcer on the folder. The function reads the ancestry of an
#     event's project with them (resourcemanager.projects.get and
#     resourcemanager.folders.get, not in its custom role) and acts in every
#     project below. Grants on folders later removed from the scope are not
#     revoked (docs/orgwide.md says how).
# The scope (IAPGUARD_PROJECTS, with patterns and folder entries) still
# decides where the function acts: entries of other projects under the
# parent are answered "rejected" (without an API call unless the scope has
# folder entries). Without DEPLOY_ORGANIZATION this is the single-project
# deployment and the script does nothing.
#
# The caller needs roles/iam.organizationRoleAdmin on the organisation,
# roles/resourcemanager.folderIamAdmin on a folder parent and on each
# folder entry (or roles/resourcemanager.organizationAdmin on an
# organisation parent), roles/logging.configWriter on the parent, and
# roles/pubsub.admin in DEPLOY_PROJECT.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT

if ! org_mode; then
  log "DEPLOY_ORGANIZATION is not set: single-project deployment, no organisation-wide sink"
  exit 0
fi
[[ "$DEPLOY_ORGANIZATION" =~ ^[0-9]+$ ]] || die "DEPLOY_ORGANIZATION=$DEPLOY_ORGANIZATION: want the numeric organisation id"
parent=${DEPLOY_SINK_PARENT:-organizations/$DEPLOY_ORGANIZATION}
case "$parent" in
  organizations/"$DEPLOY_ORGANIZATION")
    where=(--organization="$DEPLOY_ORGANIZATION")
    grant=(gcloud organizations add-iam-policy-binding "$DEPLOY_ORGANIZATION")
    ;;
  folders/*)
    folder=${parent#folders/}
    [[ "$folder" =~ ^[0-9]+$ ]] || die "DEPLOY_SINK_PARENT=$parent: want folders/NUMERIC_ID"
    where=(--folder="$folder")
    grant=(gcloud resource-manager folders add-iam-policy-binding "$folder")
    ;;
  *) die "DEPLOY_SINK_PARENT=$parent: want folders/ID or organizations/$DEPLOY_ORGANIZATION" ;;
esac
filter_file=${DEPLOY_LOG_FILTER_FILE:-}
[[ -n "$filter_file" && -s "$filter_file" ]] ||
  die "DEPLOY_LOG_FILTER_FILE='$filter_file' is missing or empty (render it with: go run ./cmd/iapctl deploy triggers --format=log-filter)"
filter=$(<"$filter_file")
parse_scope
enforcer=$(account_email "$ENFORCER_ACCOUNT")
role="organizations/$DEPLOY_ORGANIZATION/roles/$ENFORCER_ROLE"
destination="pubsub.googleapis.com/projects/$DEPLOY_PROJECT/topics/$REPLAY_TOPIC"

ensure_enforcer_role --organization="$DEPLOY_ORGANIZATION"
log "granting $ENFORCER_ROLE to $enforcer on $parent"
"${grant[@]}" --member="serviceAccount:$enforcer" --role="$role" --condition=None >/dev/null

for folder in "${FOLDERS[@]}"; do
  if [[ "$parent" != "folders/$folder" ]]; then
    log "granting $ENFORCER_ROLE to $enforcer on folders/$folder (folder entry)"
    gcloud resource-manager folders add-iam-policy-binding "$folder" --member="serviceAccount:$enforcer" \
      --role="$role" --condition=None >/dev/null
  fi
  log "granting roles/browser to $enforcer on folders/$folder (it reads the ancestry of the projects below)"
  gcloud resource-manager folders add-iam-policy-binding "$folder" --member="serviceAccount:$enforcer" \
    --role=roles/browser --condition=None >/dev/null
done

if gcloud logging sinks describe "$SINK_NAME" "${where[@]}" >/dev/null 2>&1; then
  log "updating log sink $SINK_NAME on $parent"
  gcloud logging sinks update "$SINK_NAME" "$destination" "${where[@]}" --log-filter="$filter" --quiet >/dev/null
else
  log "creating log sink $SINK_NAME on $parent (with its children)"
  gcloud logging sinks create "$SINK_NAME" "$destination" "${where[@]}" --include-children \
    --log-filter="$filter" --quiet >/dev/null
fi
writer=$(gcloud logging sinks describe "$SINK_NAME" "${where[@]}" --format='value(writerIdentity)')
[[ -n "$writer" ]] || die "log sink $SINK_NAME on $parent has no writer identity"
gcloud pubsub topics add-iam-policy-binding "$REPLAY_TOPIC" --project="$DEPLOY_PROJECT" \
  --member="$writer" --role=roles/pubsub.publisher >/dev/null
log "organisation-wide path ready: $parent → $SINK_NAME → $REPLAY_TOPIC → the replay trigger"
