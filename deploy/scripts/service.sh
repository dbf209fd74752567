#!/usr/bin/env bash
# Deploys the EnforceIAP function as the Cloud Run service DEPLOY_SERVICE
# (default iapguard-enforcer) from DEPLOY_IMAGE, locked down:
#   - runs as iapguard-enforcer (identity.sh grants its permissions);
#   - --no-allow-unauthenticated: only principals with roles/run.invoker on
#     the service may call it, and the only one granted is iapguard-trigger,
#     the Eventarc triggers' identity;
#   - --ingress=internal: nothing outside the project's network perimeter
#     reaches it (Eventarc and Pub/Sub push deliveries from the same project
#     are internal traffic for Cloud Run);
#   - never labelled iap=enabled: the function must not guard itself, or
#     Eventarc could no longer deliver to it.
# Configuration (docs/deploy.md): IAPGUARD_PROJECTS (allowlist of project
# ids, patterns such as team-* and, on the organisation-wide path,
# folders/N; default DEPLOY_PROJECT; the numbers of the listed and matching
# projects are added, the patterns and folder entries kept as they are),
# IAPGUARD_DRY_RUN (default true: plan and publish outcomes, change nothing), IAPGUARD_LOG_LEVEL (default info), IAPGUARD_TIMEOUT
# (optional, per-event deadline), DEPLOY_MAX_INSTANCES (default 10).
#
# The scope goes to the function as IAPGUARD_PROJECTS. Cloud Run allows an
# environment variable at most 32,768 bytes: a longer scope is refused
# before anything changes, unless DEPLOY_SCOPE_SECRET names a Secret
# Manager secret, which then holds the scope (a new version each run,
# 64 KiB at most), readable by iapguard-enforcer only, mounted at
# /etc/iapguard/scope/projects and named by IAPGUARD_PROJECTS_FILE.
#
# The caller needs roles/run.admin and roles/iam.serviceAccountUser on
# iapguard-enforcer (identity.sh grants it), and with DEPLOY_SCOPE_SECRET
# roles/secretmanager.admin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT DEPLOY_REGION DEPLOY_IMAGE
resolve_allowlist

service=${DEPLOY_SERVICE:-iapguard-enforcer}
dry_run=${IAPGUARD_DRY_RUN:-true}
case "$dry_run" in
  true | false) ;;
  *) die "IAPGUARD_DRY_RUN=$dry_run: want true or false" ;;
esac
enforcer=$(account_email "$ENFORCER_ACCOUNT")
trigger=$(account_email "$TRIGGER_ACCOUNT")

# The allowlist names each project by id and by number: audit entries that
# Google service agents write name the project by number
# (docs/configuration.md).
projects=""
for project in "${ALLOWLIST[@]}"; do
  projects+="$project,"
  if [[ ! "$project" =~ ^[0-9]+$ ]]; then
    projects+="$(project_number "$project"),"
  fi
done
# Patterns go to the function as they are: a project created after this
# deployment is in scope by id at once (docs/orgwide.md). So do folder
# entries, unexpanded: the function resolves a project's folders itself
# (by id or number, however deep), so a project created or moved under a
# listed folder later is in scope at once; org.sh grants what it needs on
# each folder.
for pattern in "${PATTERNS[@]}"; do
  projects+="$pattern,"
done
for folder in "${FOLDERS[@]}"; do
  projects+="folders/$folder,"
done
projects=${projects%,}
# '^|^' makes '|' the separator, so the comma-separated allowlist survives
# (gcloud topic escaping).
env_vars="^|^FUNCTION_TARGET=$ENTRY_POINT"
env_vars+="|GOOGLE_CLOUD_PROJECT=$DEPLOY_PROJECT"
scope_flags=()
if [[ -n "${DEPLOY_SCOPE_SECRET:-}" ]]; then
  secret=$DEPLOY_SCOPE_SECRET
  ((${#projects} <= 65536)) ||
    die "the scope is ${#projects} bytes; a Secret Manager version holds at most 65536: shorten it with patterns (team-*) or folder entries (folders/N)"
  if ! gcloud secrets describe "$secret" --project="$DEPLOY_PROJECT" >/dev/null 2>&1; then
    log "creating secret $secret for the scope"
    gcloud secrets create "$secret" --project="$DEPLOY_PROJECT" --replication-policy=automatic >/dev/null
  fi
  printf '%s\n' "$projects" | gcloud secrets versions add "$secret" --project="$DEPLOY_PROJECT" --data-file=- >/dev/null
  gcloud secrets add-iam-policy-binding "$secret" --project="$DEPLOY_PROJECT" \
    --member="serviceAccount:$enforcer" --role=roles/secretmanager.secretAccessor >/dev/null
  env_vars+="|IAPGUARD_PROJECTS_FILE=/etc/iapguard/scope/projects"
  scope_flags=(--set-secrets="/etc/iapguard/scope/projects=$secret:latest")
else
  ((${#projects} <= MAX_ENV_VALUE)) ||
    die "IAPGUARD_PROJECTS would be ${#projects} bytes; Cloud Run allows an environment variable at most $MAX_ENV_VALUE. Put the scope in a Secret Manager secret mounted as a file (DEPLOY_SCOPE_SECRET=NAME, the _SCOPE_SECRET substitution; docs/deploy.md), or shorten it with patterns (team-*) or folder entries"
  env_vars+="|IAPGUARD_PROJECTS=$projects"
fi
env_vars+="|IAPGUARD_OUTCOMES_TOPIC=projects/$DEPLOY_PROJECT/topics/$OUTCOMES_TOPIC"
env_vars+="|IAPGUARD_DRY_RUN=$dry_run"
env_vars+="|IAPGUARD_LOG_LEVEL=${IAPGUARD_LOG_LEVEL:-info}"
if [[ -n "${IAPGUARD_TIMEOUT:-}" ]]; then
  env_vars+="|IAPGUARD_TIMEOUT=$IAPGUARD_TIMEOUT"
fi

log "deploying $service (dry run: $dry_run, scope of ${#projects} bytes${DEPLOY_SCOPE_SECRET:+ in secret $DEPLOY_SCOPE_SECRET})"
gcloud run deploy "$service" --project="$DEPLOY_PROJECT" --region="$DEPLOY_REGION" \
  --image="$DEPLOY_IMAGE" --service-account="$enforcer" \
  --no-allow-unauthenticated --ingress=internal \
  --set-env-vars="$env_vars" \
  --timeout=120s --concurrency=20 --max-instances="${DEPLOY_MAX_INSTANCES:-10}" \
  --cpu=1 --memory=512Mi --labels=app=iapguard "${scope_flags[@]}" --quiet

gcloud run services add-iam-policy-binding "$service" --project="$DEPLOY_PROJECT" --region="$DEPLOY_REGION" \
  --member="serviceAccount:$trigger" --role=roles/run.invoker >/dev/null
log "$service deployed; only $trigger may invoke it"
