#!/usr/bin/env bash
# Creates or updates one Cloud Scheduler job per allowlisted project (the
# listed ones, those the patterns match and those under the folder entries,
# found when this runs; lib.sh resolve_allowlist, expand_folders) that
# publishes a replay message for the whole project to the replay topic, so
# drift that produced no audit entry (or whose event was lost) is still
# reconciled:
#   {"version":1,"project":"PROJECT","requestedBy":"scheduler"}
# (docs/replay-message.md). Jobs of projects no longer on the allowlist are
# deleted. DEPLOY_SWEEP_SCHEDULE (cron, default every 6 hours) and
# DEPLOY_SWEEP_TIME_ZONE (default Etc/UTC) set the cadence. A job's id is
# iapguard-sweep- and the project id with '_', ':' and '.' escaped
# reversibly (lib.sh sweep_job_id: example.com:p → iapguard-sweep-example_dcom_cp).
#
# A project created later under a listed folder, or matching a pattern, is
# enforced through its events at once and swept after the next deployment.
#
# The caller needs roles/cloudscheduler.admin, and with folder entries
# roles/browser on each listed folder (to find its projects).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT DEPLOY_REGION
resolve_allowlist
expand_folders

schedule=${DEPLOY_SWEEP_SCHEDULE:-17 */6 * * *}
time_zone=${DEPLOY_SWEEP_TIME_ZONE:-Etc/UTC}
topic="projects/$DEPLOY_PROJECT/topics/$REPLAY_TOPIC"
where=(--project="$DEPLOY_PROJECT" --location="$DEPLOY_REGION")

declare -A wanted=()
for project in "${ALLOWLIST[@]}" "${FOLDER_PROJECTS[@]}"; do
  job=$(sweep_job_id "$project")
  wanted[$job]=1
  body=$(printf '{"version":1,"project":"%s","requestedBy":"scheduler"}' "$project")
  if gcloud scheduler jobs describe "$job" "${where[@]}" >/dev/null 2>&1; then
    verb=update
  else
    verb=create
  fi
  log "$verb sweep job $job ($schedule $time_zone)"
  gcloud scheduler jobs "$verb" pubsub "$job" "${where[@]}" --schedule="$schedule" \
    --time-zone="$time_zone" --topic="$topic" --message-body="$body" >/dev/null
done

for job in $(gcloud scheduler jobs list "${where[@]}" --filter="name~/jobs/$SWEEP_JOB_PREFIX" \
  --format='value(name.basename())'); do
  if [[ -z "${wanted[$job]:-}" ]]; then
    log "deleting sweep job $job (project $(sweep_job_project "$job") no longer allowlisted)"
    gcloud scheduler jobs delete "$job" "${where[@]}" --quiet
  fi
done
