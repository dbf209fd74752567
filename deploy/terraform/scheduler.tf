# The sweep: one job per allowlisted project publishing a project-wide replay
# message (docs/replay-message.md) to the replay topic: the listed projects,
# those the patterns match and those found under the folder entries
# (main.tf, local.folder_projects), when Terraform runs. Job ids allow
# letters, digits, '-' and '_' only: '_', ':' and '.' of a (domain-scoped)
# project id are escaped reversibly as _u, _c and _d, as
# deploy/scripts/lib.sh sweep_job_id does.
resource "google_cloud_scheduler_job" "sweep" {
  for_each  = toset(local.scope_projects)
  project   = var.project
  region    = var.region
  name      = "iapguard-sweep-${replace(replace(replace(each.value, "_", "_u"), ":", "_c"), ".", "_d")}"
  schedule  = var.sweep_schedule
  time_zone = var.sweep_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.replay.id
    data = base64encode(jsonencode({
      version     = 1
      project     = each.value
      requestedBy = "scheduler"
    }))
  }

  depends_on = [google_project_service.apis]
}
