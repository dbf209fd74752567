# The organisation-wide path (docs/deploy.md, "One deployment for many
# projects"), with var.organization_id set: one function guards every
# project in scope, fed by an aggregated log sink instead of per-project
# Eventarc triggers. Entries of projects under the sink's parent that are
# outside the scope reach the function and are answered "rejected" without
# an API call.
locals {
  org_mode    = var.organization_id != ""
  sink_parent = var.sink_parent != "" ? var.sink_parent : "organizations/${var.organization_id}"
  sink_folder = startswith(local.sink_parent, "folders/")

  # Rendered from eventarc/triggers.yaml (iapctl deploy triggers
  # --format=log-filter): Admin Activity entries of the trigger methods.
  log_filter = trimspace(file("${path.module}/generated/log-filter.txt"))
}

# The function's role, defined once in the organisation ...
resource "google_organization_iam_custom_role" "enforcer" {
  count       = local.org_mode ? 1 : 0
  org_id      = var.organization_id
  role_id     = local.enforcer_role.role_id
  title       = local.enforcer_role.title
  description = local.enforcer_role.description
  stage       = local.enforcer_role.stage
  permissions = local.enforcer_role.permissions
}

# ... and granted to the function at the sink's parent, so it holds in every
# project below.
resource "google_folder_iam_member" "enforcer" {
  count  = local.org_mode && local.sink_folder ? 1 : 0
  folder = local.sink_parent
  role   = google_organization_iam_custom_role.enforcer[0].name
  member = "serviceAccount:${google_service_account.enforcer.email}"
}

resource "google_organization_iam_member" "enforcer" {
  count  = local.org_mode && !local.sink_folder ? 1 : 0
  org_id = var.organization_id
  role   = google_organization_iam_custom_role.enforcer[0].name
  member = "serviceAccount:${google_service_account.enforcer.email}"
}

# Folder entries of the scope (var.projects "folders/N"): the function's
# role on each listed folder, unless it is the sink's parent (bound above;
# two resources must not manage one binding), and roles/browser
# (resourcemanager.projects.get and resourcemanager.folders.get, which the
# function needs to read a project's ancestry and its custom role cannot
# hold). Both hold in every project and folder below.
resource "google_folder_iam_member" "enforcer_on_scope_folders" {
  for_each = local.org_mode ? toset([for f in local.scope_folder_entries : f if f != local.sink_parent]) : toset([])
  folder   = each.value
  role     = google_organization_iam_custom_role.enforcer[0].name
  member   = "serviceAccount:${google_service_account.enforcer.email}"
}

resource "google_folder_iam_member" "browser_on_scope_folders" {
  for_each = local.org_mode ? toset(local.scope_folder_entries) : toset([])
  folder   = each.value
  role     = "roles/browser"
  member   = "serviceAccount:${google_service_account.enforcer.email}"
}

# The aggregated sink: the parent's and its children's audit entries that
# the triggers select go to the replay topic, whose trigger delivers them.
resource "google_logging_folder_sink" "audit" {
  count            = local.org_mode && local.sink_folder ? 1 : 0
  name             = "iapguard-audit"
  folder           = local.sink_parent
  include_children = true
  destination      = "pubsub.googleapis.com/${google_pubsub_topic.replay.id}"
  filter           = local.log_filter
}

resource "google_logging_organization_sink" "audit" {
  count            = local.org_mode && !local.sink_folder ? 1 : 0
  name             = "iapguard-audit"
  org_id           = var.organization_id
  include_children = true
  destination      = "pubsub.googleapis.com/${google_pubsub_topic.replay.id}"
  filter           = local.log_filter
}

# The sink's writer identity may publish to the replay topic, and nowhere else.
resource "google_pubsub_topic_iam_member" "sink_writer_publishes" {
  count   = local.org_mode ? 1 : 0
  project = var.project
  topic   = google_pubsub_topic.replay.name
  role    = "roles/pubsub.publisher"
  member = one(concat(
    google_logging_folder_sink.audit[*].writer_identity,
    google_logging_organization_sink.audit[*].writer_identity,
  ))
}
