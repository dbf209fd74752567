locals {
  # Audit entries that Google service agents write name the project by
  # number, so the allowlist carries both forms (docs/configuration.md).
  allowlist_ids_and_numbers = flatten([
    for p in local.allowlist : [p, tostring(data.google_project.allowlisted[p].number)]
  ])

  # The environment the function reads (functions.ConfigFromEnv).
  function_env = {
    FUNCTION_TARGET         = "EnforceIAP"
    GOOGLE_CLOUD_PROJECT    = var.project
    IAPGUARD_PROJECTS       = join(",", concat(local.allowlist_ids_and_numbers, local.scope_patterns, local.scope_folder_entries))
    IAPGUARD_OUTCOMES_TOPIC = google_pubsub_topic.outcomes.id
    IAPGUARD_DRY_RUN        = tostring(var.dry_run)
    IAPGUARD_LOG_LEVEL      = var.log_level
  }
}

# The function, private: internal ingress, no public invoker binding; only
# the trigger identity may invoke it. Never label it iap=enabled.
resource "google_cloud_run_v2_service" "enforcer" {
  project             = var.project
  name                = var.service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels = {
    app = "iapguard"
  }

  template {
    service_account                  = google_service_account.enforcer.email
    timeout                          = "120s"
    max_instance_request_concurrency = 20

    scaling {
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      dynamic "env" {
        for_each = local.function_env
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.enforcer,
    google_folder_iam_member.enforcer,
    google_organization_iam_member.enforcer,
    google_folder_iam_member.enforcer_on_scope_folders,
    google_folder_iam_member.browser_on_scope_folders,
    google_pubsub_topic_iam_member.enforcer_publishes_outcomes,
  ]

  lifecycle {
    # Folder entries need the function's role granted on the folder, which
    # only the organisation-level role of the organisation-wide path can be.
    precondition {
      condition     = local.org_mode || length(local.scope_folder_entries) == 0
      error_message = "projects: folder entries (folders/N) need the organisation-wide path (organization_id): the function's role is granted on each listed folder, which only an organisation-level role can be."
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes" {
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.enforcer.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}
