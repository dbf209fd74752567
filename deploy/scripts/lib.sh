#!/usr/bin/env bash
# Shared by the deploy/scripts/*.sh steps; sourced, not run. The names below
# are part of the deployment contract: internal/deploy's tests check them
# against the Go constants, eventarc/triggers.yaml and the Terraform module.
#
# Inputs (environment):
#   DEPLOY_PROJECT      project that runs the function (required)
#   DEPLOY_REGION       region of the function (required by most steps)
#   IAPGUARD_PROJECTS   allowlist, comma-separated project ids, patterns
#                       such as team-* and, on the organisation-wide path,
#                       folders/N (default: DEPLOY_PROJECT)
#   DEPLOY_ORGANIZATION organisation id: set, the organisation-wide path is
#                       deployed (org.sh; docs/deploy.md) and the function's
#                       role is granted once at the sink's parent (and on
#                       each folder entry) instead of per project
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
readonly SINK_NAME=iapguard-audit
# MAX_ENV_VALUE is the most bytes Cloud Run allows one environment variable.
readonly MAX_ENV_VALUE=32768

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

# scope_entries: the entries of IAPGUARD_PROJECTS (commas, spaces allowed),
# one per line, never glob-expanded; DEPLOY_PROJECT alone when it is empty.
scope_entries() {
  local raw=${IAPGUARD_PROJECTS:-} entry
  local -a entries
  if [[ -z "${raw//[, ]/}" ]]; then
    printf '%s\n' "$DEPLOY_PROJECT"
    return
  fi
  IFS=', ' read -r -a entries <<<"$raw"
  for entry in "${entries[@]}"; do
    [[ -z "$entry" ]] || printf '%s\n' "$entry"
  done
}

# parse_scope reads IAPGUARD_PROJECTS without a call: LISTED gets the
# project ids and numbers, PATTERNS the patterns, FOLDERS the numeric ids of
# the folders/N entries (each once, in order). It dies on an entry the
# function would refuse, and on a folder entry outside the
# organisation-wide path: the function's role is granted on the folder, and
# only an organisation-level role can be. Call it in the script's own shell.
LISTED=()
PATTERNS=()
FOLDERS=()
parse_scope() {
  local entry
  declare -A seen=()
  LISTED=()
  PATTERNS=()
  FOLDERS=()
  while read -r entry; do
    [[ -n "$entry" && -z "${seen[$entry]:-}" ]] || continue
    seen[$entry]=1
    if [[ "$entry" == folders/* ]]; then
      [[ "$entry" =~ ^folders/[0-9]+$ ]] ||
        die "IAPGUARD_PROJECTS: '$entry' is not a folder entry (want folders/NUMERIC_ID)"
      org_mode ||
        die "IAPGUARD_PROJECTS: '$entry': folder entries need the organisation-wide path (DEPLOY_ORGANIZATION, the _ORGANIZATION substitution): the function's role is granted on the folder, which only an organisation-level role can be (docs/orgwide.md, Deploying with folder entries)"
      FOLDERS+=("${entry#folders/}")
      continue
    fi
    [[ "$entry" =~ ^[A-Za-z0-9.:_*-]+$ ]] ||
      die "IAPGUARD_PROJECTS: '$entry' is not a project id, number, pattern or folders/N (only * is a wildcard)"
    if [[ "$entry" == *'*'* ]]; then
      PATTERNS+=("$entry")
    else
      LISTED+=("$entry")
    fi
  done < <(scope_entries)
}

# resolve_allowlist sets ALLOWLIST to the projects the function is given by
# id and number: the listed ones, then the projects the deployer can see
# (gcloud projects list) whose id matches a pattern ('*' matches any run of
# characters, as in the function's scope); PATTERNS and FOLDERS as
# parse_scope does. Folder entries are not expanded here (expand_folders).
# Call it in the script's own shell (not in $(...)): it dies on an entry the
# function would refuse and when the projects cannot be listed. Patterns are
# matched when the deployment runs: a project created later is reached by
# id at once, by number and by the sweep after the next deployment.
ALLOWLIST=()
declare -A NUMBERS=() # project id → number, for the projects listed to match patterns or folders
declare -A IN_ALLOWLIST=()
resolve_allowlist() {
  local entry pattern id number listed line
  local -a lines
  parse_scope
  ALLOWLIST=()
  IN_ALLOWLIST=()
  for entry in "${LISTED[@]}"; do
    IN_ALLOWLIST[$entry]=1
    ALLOWLIST+=("$entry")
  done
  ((${#PATTERNS[@]} > 0)) || return 0
  listed=$(gcloud projects list --format='value(projectId,projectNumber)' --sort-by=projectId) ||
    die "cannot list projects to match ${PATTERNS[*]} (the deployer needs resourcemanager.projects.list)"
  mapfile -t lines <<<"$listed"
  for line in "${lines[@]}"; do
    read -r id number <<<"$line"
    [[ -n "$id" ]] || continue
    NUMBERS[$id]=$number
    for pattern in "${PATTERNS[@]}"; do
      # Unquoted on the right of ==, the pattern is a glob; '*' is the only
      # wildcard it can hold (checked above).
      # shellcheck disable=SC2053
      # A project listed by number is not added again by id: one sweep
      # job per project (the pattern itself keeps its id in the scope).
      if [[ "$id" == $pattern && -z "${IN_ALLOWLIST[$id]:-}" && (-z "$number" || -z "${IN_ALLOWLIST[$number]:-}") ]]; then
        IN_ALLOWLIST[$id]=1
        ALLOWLIST+=("$id")
      fi
    done
  done
  log "patterns ${PATTERNS[*]} match ${#ALLOWLIST[@]} project(s) with the listed ones"
}

# expand_folders sets FOLDER_PROJECTS to the active projects under the
# folder entries (after resolve_allowlist), however deep: for each folder
# of the tree, `gcloud resource-manager folders list --folder=F` gives its
# sub-folders and `gcloud projects list` with the filter parent.id:F its
# direct child projects (two calls per folder; a folder listed inside
# another listed folder is walked once). Projects already in ALLOWLIST, by
# id or by a listed number, are left out, so each project gets one sweep
# job. A project created under a folder later is in scope at once (the
# function resolves folders itself) but has no sweep job, IAP API or actAs
# grant until the next deployment. The deployer needs
# resourcemanager.folders.list and resourcemanager.projects.list on each
# listed folder (roles/browser). Call it in the script's own shell.
FOLDER_PROJECTS=()
expand_folders() {
  local folder child id number listed line
  local -a queue lines
  declare -A walked=()
  FOLDER_PROJECTS=()
  ((${#FOLDERS[@]} > 0)) || return 0
  queue=("${FOLDERS[@]}")
  while ((${#queue[@]} > 0)); do
    folder=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -z "${walked[$folder]:-}" ]] || continue
    walked[$folder]=1
    listed=$(gcloud resource-manager folders list --folder="$folder" --format='value(name.basename())') ||
      die "cannot list the sub-folders of folders/$folder (the deployer needs resourcemanager.folders.list there, e.g. roles/browser)"
    for child in $listed; do
      queue+=("$child")
    done
    listed=$(gcloud projects list --filter="parent.type:folder parent.id:$folder lifecycleState:ACTIVE" \
      --format='value(projectId,projectNumber)' --sort-by=projectId) ||
      die "cannot list the projects of folders/$folder (the deployer needs resourcemanager.projects.list there, e.g. roles/browser)"
    mapfile -t lines <<<"$listed"
    for line in "${lines[@]}"; do
      read -r id number <<<"$line"
      [[ -n "$id" ]] || continue
      NUMBERS[$id]=$number
      [[ -z "${IN_ALLOWLIST[$id]:-}" ]] || continue
      [[ -z "$number" || -z "${IN_ALLOWLIST[$number]:-}" ]] || continue
      IN_ALLOWLIST[$id]=1
      FOLDER_PROJECTS+=("$id")
    done
  done
  log "folders ${FOLDERS[*]/#/folders/} hold ${#FOLDER_PROJECTS[@]} more project(s) in ${#walked[@]} folder(s)"
}

# ensure_enforcer_role WHERE_FLAG: creates, undeletes or updates the custom
# role iapguardEnforcer from deploy/iam/iapguard-enforcer.yaml in a project
# (--project=P) or an organisation (--organization=O).
ensure_enforcer_role() {
  local where=$1 deleted role_file="$REPO_ROOT/deploy/iam/iapguard-enforcer.yaml"
  [[ -f "$role_file" ]] || die "$role_file is missing"
  deleted=$(gcloud iam roles describe "$ENFORCER_ROLE" "$where" --format='value(deleted)' 2>/dev/null) || deleted=missing
  case "$deleted" in
    missing)
      log "creating role $ENFORCER_ROLE in ${where#--}"
      gcloud iam roles create "$ENFORCER_ROLE" "$where" --file="$role_file" --quiet >/dev/null
      ;;
    True)
      log "undeleting and updating role $ENFORCER_ROLE in ${where#--}"
      gcloud iam roles undelete "$ENFORCER_ROLE" "$where" >/dev/null
      gcloud iam roles update "$ENFORCER_ROLE" "$where" --file="$role_file" --quiet >/dev/null
      ;;
    *)
      log "updating role $ENFORCER_ROLE in ${where#--}"
      gcloud iam roles update "$ENFORCER_ROLE" "$where" --file="$role_file" --quiet >/dev/null
      ;;
  esac
}

# org_mode: true when the organisation-wide path is deployed.
org_mode() { [[ -n "${DEPLOY_ORGANIZATION:-}" ]]; }

# project_number PROJECT: the project's number (known without a call for
# the projects resolve_allowlist listed).
project_number() {
  if [[ -n "${NUMBERS[$1]:-}" ]]; then
    printf '%s\n' "${NUMBERS[$1]}"
    return
  fi
  gcloud projects describe "$1" --format='value(projectNumber)'
}

# sweep_job_id PROJECT|folders/N: the id of the sweep job of a project, or
# of a folder entry (iapguard-sweep-_fN: no project id escapes to "_f"). Cloud Scheduler job
# ids allow letters, digits, hyphens and underscores only, and a
# domain-scoped project id (example.com:p) has '.' and ':'; project ids
# never hold '_', so it is the escape: '_' → _u, ':' → _c, '.' → _d (in that
# order), reversed by sweep_job_project. deploy/terraform/scheduler.tf
# encodes the same way.
sweep_job_id() {
  if [[ "$1" == folders/* ]]; then
    printf '%s_f%s\n' "$SWEEP_JOB_PREFIX" "${1#folders/}"
    return
  fi
  local id=${1//_/_u}
  id=${id//:/_c}
  printf '%s%s\n' "$SWEEP_JOB_PREFIX" "${id//./_d}"
}

# sweep_job_project JOB: the project whose sweep job JOB is (the inverse of
# sweep_job_id).
sweep_job_project() {
  local id=${1#"$SWEEP_JOB_PREFIX"}
  id=${id//_d/.}
  id=${id//_c/:}
  printf '%s\n' "${id//_u/_}"
}

# sweep_job_scope JOB: the scope whose sweep job JOB is (folders/N or
# projects/P).
sweep_job_scope() {
  local id=${1#"$SWEEP_JOB_PREFIX"}
  if [[ "$id" == _f* ]]; then
    printf 'folders/%s\n' "${id#_f}"
    return
  fi
  printf 'projects/%s\n' "$(sweep_job_project "$1")"
}

# pubsub_agent PROJECT: the Pub/Sub service agent of PROJECT.
pubsub_agent() { printf 'service-%s@gcp-sa-pubsub.iam.gserviceaccount.com\n' "$(project_number "$1")"; }
