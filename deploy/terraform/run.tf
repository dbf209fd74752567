locals {
  # Audit entries that Google service agents write name the project by
  # number, so the allowlist carries both forms (docs/configuration.md).
  allowlist_ids_and_numbers = flatten([
    for p in local.allowlist : [p, tostring(data.google_project.allowlisted[p].number)]
  ])

  # The scope as the function reads it (IAPGUARD_PROJECTS).
  scope_value = join(",", concat(local.allowlist_ids_and_numbers, local.scope_patterns, local.scope_folder_entries))
  # Cloud Run allows an environment variable at most 32,768 bytes; a longer
  # scope goes to a secret mounted as a file (var.scope_in_secret).
  max_env_value = 32768
  scope_mount   = "/etc/iapguard/scope"
  # The environment the function reads (functions.ConfigFromEnv).
  function_env = merge({
    FUNCTION_TARGET         = "EnforceIAP"
    GOOGLE_CLOUD_PROJECT    = var.project
    IAPGUARD_OUTCOMES_TOPIC = google_pubsub_topic.outcomes.id
    IAPGUARD_DRY_RUN        = tostring(var.dry_run)
    IAPGUARD_LOG_LEVEL      = var.log_level
    }, var.scope_in_secret ? {
    IAPGUARD_PROJECTS_FILE = "${local.scope_mount}/projects"
    } : {
    IAPGUARD_PROJECTS = local.scope_value
  })
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

    # The scope, when it lives in a secret: mounted read-only as a file.
    dynamic "volumes" {
      for_each = var.scope_in_secret ? ["scope"] : []
      content {
        name = volumes.value
        secret {
          secret = google_secret_manager_secret.scope[0].secret_id
          items {
            version = "latest"
            path    = "projects"
          }
        }
      }
    }

    containers {
      image = var.image

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      dynamic "volume_mounts" {
        for_each = var.scope_in_secret ? ["scope"] : []
        content {
          name       = volume_mounts.value
          mount_path = local.scope_mount
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
    google_service_account_iam_member.deployer_acts_as,
    google_secret_manager_secret_version.scope,
    google_secret_manager_secret_iam_member.enforcer_reads_scope,
  ]

  lifecycle {
    # Folder entries need the function's role granted on the folder, which
    # only the organisation-level role of the organisation-wide path can be.
    precondition {
      condition     = local.org_mode || length(local.scope_folder_entries) == 0
      error_message = "projects: folder entries (folders/N) need the organisation-wide path (organization_id): the function's role is granted on each listed folder, which only an organisation-level role can be."
    }
    # Cloud Run refuses an environment variable over 32,768 bytes.
    precondition {
      condition     = var.scope_in_secret || length(local.scope_value) <= local.max_env_value
      error_message = "projects: the scope is longer than the 32768 bytes Cloud Run allows an environment variable (IAPGUARD_PROJECTS). Set scope_in_secret = true to give it to the function as a mounted Secret Manager secret, or shorten it with patterns (team-*) or folder entries."
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

# The scope in a Secret Manager secret (var.scope_in_secret), for scopes
# longer than an environment variable: a version per change, readable by
# the function only, mounted at local.scope_mount (IAPGUARD_PROJECTS_FILE).
resource "google_secret_manager_secret" "scope" {
  count     = var.scope_in_secret ? 1 : 0
  project   = var.project
  secret_id = "iapguard-scope"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "scope" {
  count       = var.scope_in_secret ? 1 : 0
  secret      = google_secret_manager_secret.scope[0].id
  secret_data = local.scope_value
}

resource "google_secret_manager_secret_iam_member" "enforcer_reads_scope" {
  count     = var.scope_in_secret ? 1 : 0
  project   = var.project
  secret_id = google_secret_manager_secret.scope[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.enforcer.email}"
}
