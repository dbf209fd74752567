# The outcome message contract (docs/outcomes.md) as a Pub/Sub schema; the
# outcomes topic rejects messages that do not match it.
resource "google_pubsub_schema" "outcome" {
  project    = var.project
  name       = "iapguard-outcome-v1"
  type       = "PROTOCOL_BUFFER"
  definition = file("${path.module}/../pubsub/outcome.proto")
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "outcomes" {
  project = var.project
  name    = "iapguard-outcomes"

  schema_settings {
    schema   = google_pubsub_schema.outcome.id
    encoding = "JSON"
  }
}

# iapctl replay, the sweep jobs and optional log sinks publish here; the
# replay trigger delivers it to the function.
resource "google_pubsub_topic" "replay" {
  project    = var.project
  name       = local.replay_topic
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project    = var.project
  name       = "iapguard-dead-letter"
  depends_on = [google_project_service.apis]
}

# Keeps dead-lettered events for 7 days; a topic without subscriptions drops
# what is published to it.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project                    = var.project
  name                       = "iapguard-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

# The function may publish to the outcomes topic and nowhere else.
resource "google_pubsub_topic_iam_member" "enforcer_publishes_outcomes" {
  project = var.project
  topic   = google_pubsub_topic.outcomes.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.enforcer.email}"
}

# A sweep request fans out: the function publishes one replay message per
# labelled service it found (docs/orgwide.md).
resource "google_pubsub_topic_iam_member" "enforcer_publishes_replays" {
  project = var.project
  topic   = google_pubsub_topic.replay.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.enforcer.email}"
}

resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_agent}"
}
