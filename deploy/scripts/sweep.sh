#!/usr/bin/env bash
# Creates or updates one Cloud Scheduler job per scope of the allowlist —
# each folder entry, and each project listed or matched by a pattern (lib.sh
# resolve_allowlist; projects under a listed folder are the folder's) — that
# publishes a sweep request to the replay topic:
#   {"version":1,"scope":"folders/N","requestedBy":"scheduler"}
#   {"version":1,"scope":"projects/PROJECT","requestedBy":"scheduler"}
# (docs/replay-message.md). The function finds the labelled Cloud Run
# services of the scope (one Cloud Asset Inventory search; per region when
# Cloud Asset is off) and publishes one replay message per service, so drift
# that produced no audit entry (or whose event was lost) is still
# reconciled, spread over the function's instances. Jobs of scopes no
# longer on the allowlist are deleted. DEPLOY_SWEEP_SCHEDULE (cron, default
# every 6 hours) and DEPLOY_SWEEP_TIME_ZONE (default Etc/UTC) set the
# cadence. A project job's id is iapguard-sweep- and the project id with
# '_', ':' and '.' escaped reversibly (lib.sh sweep_job_id:
# example.com:p → iapguard-sweep-example_dcom_cp); a folder job's is
# iapguard-sweep-_fN (no project id escapes to "_f").
#
# A project created later under a listed folder is swept by the folder's
# job at once; one matching a pattern is swept after the next deployment.
#
# The caller needs roles/cloudscheduler.admin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT DEPLOY_REGION
resolve_allowlist

schedule=${DEPLOY_SWEEP_SCHEDULE:-17 */6 * * *}
time_zone=${DEPLOY_SWEEP_TIME_ZONE:-Etc/UTC}
topic="projects/$DEPLOY_PROJECT/topics/$REPLAY_TOPIC"
where=(--project="$DEPLOY_PROJECT" --location="$DEPLOY_REGION")

declare -A wanted=()
ensure_job() { # JOB BODY
  local verb
  wanted[$1]=1
  if gcloud scheduler jobs describe "$1" "${where[@]}" >/dev/null 2>&1; then
    verb=update
  else
    verb=create
  fi
  log "$verb sweep job $1 ($schedule $time_zone)"
  gcloud scheduler jobs "$verb" pubsub "$1" "${where[@]}" --schedule="$schedule" \
    --time-zone="$time_zone" --topic="$topic" --message-body="$2" >/dev/null
}
for folder in "${FOLDERS[@]}"; do
  ensure_job "$(sweep_job_id "folders/$folder")" "$(printf '{"version":1,"scope":"folders/%s","requestedBy":"scheduler"}' "$folder")"
done
for project in "${ALLOWLIST[@]}"; do
  ensure_job "$(sweep_job_id "$project")" "$(printf '{"version":1,"scope":"projects/%s","requestedBy":"scheduler"}' "$project")"
done

for job in $(gcloud scheduler jobs list "${where[@]}" --filter="name~/jobs/$SWEEP_JOB_PREFIX" \
  --format='value(name.basename())'); do
  if [[ -z "${wanted[$job]:-}" ]]; then
    log "deleting sweep job $job ($(sweep_job_scope "$job") no longer in scope)"
    gcloud scheduler jobs delete "$job" "${where[@]}" --quiet
  fi
done
