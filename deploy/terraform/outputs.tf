output "enforcer_service_account" {
  description = "Identity of the function."
  value       = google_service_account.enforcer.email
}

output "trigger_service_account" {
  description = "Identity of the Eventarc triggers."
  value       = google_service_account.trigger.email
}

output "service" {
  description = "Cloud Run service running the function."
  value       = google_cloud_run_v2_service.enforcer.name
}

output "outcomes_topic" {
  description = "Topic carrying outcome messages (docs/outcomes.md)."
  value       = google_pubsub_topic.outcomes.id
}

output "replay_topic" {
  description = "Topic for replay messages and log-sink entries."
  value       = google_pubsub_topic.replay.id
}

output "dead_letter_topic" {
  description = "Topic receiving events Eventarc could not deliver."
  value       = google_pubsub_topic.dead_letter.id
}

output "trigger_subscriptions" {
  description = "Pub/Sub subscription Eventarc created for each trigger (deploy/scripts/dead-letter.sh sets their dead-letter policy)."
  value       = { for name, t in google_eventarc_trigger.iapguard : name => t.transport[0].pubsub[0].subscription }
}

output "scope_folder_projects" {
  description = "Projects found under the folder entries of var.projects (directly in each listed folder or one sub-folder below it) that get a sweep job, the IAP API and, by default, an actAs grant; deeper projects are enforced through their events only (docs/orgwide.md)."
  value       = local.folder_projects
}

output "log_sink_writer_identity" {
  description = "Organisation-wide path: the identity the aggregated log sink publishes as (null without var.organization_id)."
  value = one(concat(
    google_logging_folder_sink.audit[*].writer_identity,
    google_logging_organization_sink.audit[*].writer_identity,
  ))
}
