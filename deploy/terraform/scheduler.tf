# The sweep: one job per scope of the allowlist, publishing a sweep request
# (docs/replay-message.md) to the replay topic; the function finds the
# labelled services of the scope (one Cloud Asset Inventory search) and
# publishes one replay message per service. One job per project listed or
# matched by a pattern (main.tf local.allowlist), and one per folder entry
# (sweep_folder): the projects under a listed folder are the folder's.
# Job ids allow letters, digits, '-' and '_' only: '_', ':' and '.' of a
# (domain-scoped) project id are escaped reversibly as _u, _c and _d, as
# deploy/scripts/lib.sh sweep_job_id does; a folder's job is
# iapguard-sweep-_fN (no project id escapes to "_f").
resource "google_cloud_scheduler_job" "sweep" {
  for_each  = toset(local.allowlist)
  project   = var.project
  region    = var.region
  name      = "iapguard-sweep-${replace(replace(replace(each.value, "_", "_u"), ":", "_c"), ".", "_d")}"
  schedule  = var.sweep_schedule
  time_zone = var.sweep_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.replay.id
    data = base64encode(jsonencode({
      version     = 1
      scope       = "projects/${each.value}"
      requestedBy = "scheduler"
    }))
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_scheduler_job" "sweep_folder" {
  for_each  = toset(local.scope_folders)
  project   = var.project
  region    = var.region
  name      = "iapguard-sweep-_f${each.value}"
  schedule  = var.sweep_schedule
  time_zone = var.sweep_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.replay.id
    data = base64encode(jsonencode({
      version     = 1
      scope       = "folders/${each.value}"
      requestedBy = "scheduler"
    }))
  }

  depends_on = [google_project_service.apis]
}
