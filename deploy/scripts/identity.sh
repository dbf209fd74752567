#!/usr/bin/env bash
# Creates or updates iapguard's identities and least-privilege grants:
#   - service accounts iapguard-enforcer (runs the function) and
#     iapguard-trigger (identity of the Eventarc triggers), in DEPLOY_PROJECT;
#   - the custom role iapguardEnforcer, generated from internal/iamperm into
#     deploy/iam/iapguard-enforcer.yaml, in every allowlisted project, granted
#     there to iapguard-enforcer (with DEPLOY_ORGANIZATION set, org.sh
#     instead grants one organisation-level role at the sink's parent);
#   - roles/iam.serviceAccountUser for iapguard-enforcer on each runtime
#     service account of the labelled services, because Cloud Run checks
#     iam.serviceAccounts.actAs on every UpdateService
#     (DEPLOY_RUNTIME_SERVICE_ACCOUNTS, comma-separated; default: the Compute
#     default service account of each allowlisted project, which Cloud Run
#     uses when a service names none, including the projects under the
#     scope's folder entries as the deployment finds them);
#   - roles/eventarc.eventReceiver for iapguard-trigger on DEPLOY_PROJECT.
# Nothing is granted project-wide beyond the custom role and the event
# receiver role.
#
# The caller needs roles/iam.serviceAccountAdmin, roles/iam.roleAdmin and
# roles/resourcemanager.projectIamAdmin (on every allowlisted project), and
# with folder entries roles/browser on each listed folder (to find its
# projects). The folder-level grants themselves are org.sh's.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT
resolve_allowlist
expand_folders

enforcer=$(account_email "$ENFORCER_ACCOUNT")
trigger=$(account_email "$TRIGGER_ACCOUNT")

# ensure_account ID DISPLAY_NAME
ensure_account() {
  local email
  email=$(account_email "$1")
  if gcloud iam service-accounts describe "$email" --project="$DEPLOY_PROJECT" >/dev/null 2>&1; then
    log "service account $email exists"
  else
    log "creating service account $email"
    gcloud iam service-accounts create "$1" --project="$DEPLOY_PROJECT" --display-name="$2"
  fi
}

ensure_account "$ENFORCER_ACCOUNT" "iapguard enforcer (EnforceIAP function)"
ensure_account "$TRIGGER_ACCOUNT" "iapguard Eventarc triggers"

runtime_accounts=${DEPLOY_RUNTIME_SERVICE_ACCOUNTS:-}
for project in "${ALLOWLIST[@]}" "${FOLDER_PROJECTS[@]}"; do
  # The organisation-wide path grants one organisation-level role at the
  # sink's parent and on the folder entries instead (org.sh); folder
  # entries exist only there (lib.sh parse_scope).
  if ! org_mode; then
    ensure_enforcer_role --project="$project"
    gcloud projects add-iam-policy-binding "$project" --member="serviceAccount:$enforcer" \
      --role="projects/$project/roles/$ENFORCER_ROLE" --condition=None >/dev/null
  fi
  if [[ -z "${DEPLOY_RUNTIME_SERVICE_ACCOUNTS:-}" ]]; then
    runtime_accounts+="$(project_number "$project")-compute@developer.gserviceaccount.com,"
  fi
done

declare -A granted=()
for account in ${runtime_accounts//,/ }; do
  [[ -z "${granted[$account]:-}" ]] || continue
  granted[$account]=1
  log "letting $enforcer act as $account (Cloud Run updates need actAs on the runtime account)"
  gcloud iam service-accounts add-iam-policy-binding "$account" --member="serviceAccount:$enforcer" \
    --role=roles/iam.serviceAccountUser >/dev/null
done

gcloud projects add-iam-policy-binding "$DEPLOY_PROJECT" --member="serviceAccount:$trigger" \
  --role=roles/eventarc.eventReceiver --condition=None >/dev/null
log "identities ready: function $enforcer, triggers $trigger"
