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
#   - roles/eventarc.eventReceiver for iapguard-trigger on DEPLOY_PROJECT;
#   - roles/iam.serviceAccountUser for the deployer itself on exactly
#     iapguard-enforcer and iapguard-trigger: `gcloud run deploy
#     --service-account` and `gcloud eventarc triggers create
#     --service-account` check iam.serviceAccounts.actAs on them, which
#     roles/iam.serviceAccountAdmin does not hold. The deployer is
#     DEPLOY_DEPLOYER (a member: user:…, serviceAccount:…, group:…), by
#     default gcloud's active account (the build's service account in Cloud
#     Build);
#   - roles/iam.serviceAccountTokenCreator for the project's Pub/Sub service
#     agent on iapguard-trigger: push deliveries carry a token minted for the
#     trigger identity, which agents created before 2021-04-08 may not do
#     without it (harmless for newer ones).
# Nothing is granted project-wide beyond the custom role and the event
# receiver role.
#
# The caller needs roles/iam.serviceAccountAdmin (creating the accounts and
# granting on them; in every other allowlisted project too, for the grants
# on its Compute default service account), roles/iam.roleAdmin and
# roles/resourcemanager.projectIamAdmin (on every allowlisted project), and
# with folder entries roles/browser on each listed folder (to find its
# projects) and roles/iam.serviceAccountAdmin on them (the actAs grants on
# their projects' Compute default service accounts). The folder-level role
# grants themselves are org.sh's.
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

deployer=${DEPLOY_DEPLOYER:-}
if [[ -z "$deployer" ]]; then
  active=$(gcloud config get-value account 2>/dev/null) || active=""
  [[ -n "$active" ]] || die "no active gcloud account: set DEPLOY_DEPLOYER to the deployer (user:EMAIL or serviceAccount:EMAIL)"
  case "$active" in
    *.gserviceaccount.com) deployer="serviceAccount:$active" ;;
    *) deployer="user:$active" ;;
  esac
fi
[[ "$deployer" =~ ^(user|serviceAccount|group|principal|principalSet):.+ ]] ||
  die "DEPLOY_DEPLOYER=$deployer: want a member such as user:EMAIL or serviceAccount:EMAIL"
for email in "$enforcer" "$trigger"; do
  log "letting the deployer $deployer act as $email (run deploy and triggers create need actAs on it)"
  gcloud iam service-accounts add-iam-policy-binding "$email" --project="$DEPLOY_PROJECT" \
    --member="$deployer" --role=roles/iam.serviceAccountUser >/dev/null
done

agent=$(pubsub_agent "$DEPLOY_PROJECT")
log "letting the Pub/Sub service agent $agent mint tokens for $trigger (authenticated push)"
gcloud iam service-accounts add-iam-policy-binding "$trigger" --project="$DEPLOY_PROJECT" \
  --member="serviceAccount:$agent" --role=roles/iam.serviceAccountTokenCreator >/dev/null

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
