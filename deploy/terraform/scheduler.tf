# The sweep: one job per allowlisted project publishing a project-wide replay
# message (docs/replay-message.md) to the replay topic: the listed projects,
# those the patterns match and those found under the folder entries
# (main.tf, local.folder_projects), when Terraform runs.
resource "google_cloud_scheduler_job" "sweep" {
  for_each  = toset(local.scope_projects)
  project   = var.project
  region    = var.region
  name      = "iapguard-sweep-${each.value}"
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
