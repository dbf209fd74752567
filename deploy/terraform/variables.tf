variable "project" {
  description = "Project that runs the function, its triggers, topics and sweep jobs."
  type        = string
}

variable "region" {
  description = "Region of the function, the replay trigger and the sweep jobs, e.g. us-central1."
  type        = string
}

variable "projects" {
  description = "Scope: project ids, numbers, patterns such as team-* and, with var.organization_id only, folders (folders/N: every project below the folder, however deep) iapguard may change (IAPGUARD_PROJECTS). Empty means var.project only. Patterns are matched against the projects the caller can see; sweep jobs are made for the projects directly in each folder entry and one level of sub-folders below it (docs/orgwide.md). Events of other projects arrive through the organisation-wide sink (var.organization_id)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.projects : can(regex("^([A-Za-z0-9.:_*-]+|folders/[0-9]+)$", p))])
    error_message = "projects: each entry is a project id, number, pattern (only * is a wildcard) or folders/NUMERIC_ID."
  }
}

variable "organization_id" {
  description = "Organisation-wide path (docs/deploy.md): the numeric organisation id, where the function's role is defined once. Empty: the single-project deployment."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[0-9]*$", var.organization_id))
    error_message = "organization_id is the numeric organisation id, or empty."
  }
}

variable "sink_parent" {
  description = "Organisation-wide path: where the aggregated log sink lives (with its children) and the role is granted, folders/ID or organizations/ID. Empty: the organisation."
  type        = string
  default     = ""

  validation {
    condition     = var.sink_parent == "" || can(regex("^(folders|organizations)/[0-9]+$", var.sink_parent))
    error_message = "sink_parent is folders/ID or organizations/ID."
  }
}

variable "dry_run" {
  description = "true: plan and publish outcomes, change nothing (IAPGUARD_DRY_RUN). Roll out with true, watch the outcomes, then set false."
  type        = bool
  default     = true
}

variable "image" {
  description = "Container image of deploy/enforcer (built by cloudbuild.yaml or docker build -f deploy/enforcer/Dockerfile .)."
  type        = string
}

variable "log_level" {
  description = "IAPGUARD_LOG_LEVEL: debug, info, warning or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level must be debug, info, warning or error."
  }
}

variable "service_name" {
  description = "Cloud Run service that runs the function."
  type        = string
  default     = "iapguard-enforcer"
}

variable "runtime_service_accounts" {
  description = "Runtime service accounts of the labelled services; the function gets roles/iam.serviceAccountUser on each (Cloud Run checks actAs on every update). Empty means each allowlisted project's Compute default service account."
  type        = list(string)
  default     = []
}

variable "sweep_schedule" {
  description = "Cron schedule of the sweep (a project-wide replay per allowlisted project)."
  type        = string
  default     = "17 */6 * * *"
}

variable "sweep_time_zone" {
  description = "Time zone of var.sweep_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "trigger_prefix" {
  description = "Prefix of every Eventarc trigger name."
  type        = string
  default     = "iapguard-"
}

variable "max_instances" {
  description = "Upper bound on the function's instances."
  type        = number
  default     = 10
}

variable "enable_apis" {
  description = "Enable the APIs iapguard needs (never disabled on destroy)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect the function's Cloud Run service against terraform destroy."
  type        = bool
  default     = true
}

variable "optional_triggers" {
  description = "Also create the Eventarc triggers whose methods are outside Eventarc's published audit-log catalog (the alpha Compute methods; eventarc/triggers.yaml optional). Whether Eventarc accepts them is known only on a real project, and a refusal fails the apply; without them the scheduled sweep reconciles alpha-API changes."
  type        = bool
  default     = false
}

variable "deployer" {
  description = "The member that runs terraform apply (user:EMAIL, serviceAccount:EMAIL or group:EMAIL); it is granted roles/iam.serviceAccountUser on exactly iapguard-enforcer and iapguard-trigger, which deploying the function and the triggers needs. Empty: the provider's credentials (google_client_openid_userinfo, which needs the userinfo.email scope)."
  type        = string
  default     = ""
  validation {
    condition     = var.deployer == "" || can(regex("^(user|serviceAccount|group|principal|principalSet):.+$", var.deployer))
    error_message = "deployer is a member such as user:EMAIL or serviceAccount:EMAIL, or empty."
  }
}

variable "scope_in_secret" {
  description = "Give the function its scope as a Secret Manager secret (iapguard-scope) mounted as a file (IAPGUARD_PROJECTS_FILE) instead of the IAPGUARD_PROJECTS variable, which Cloud Run caps at 32,768 bytes (about 1,100 projects by id and number). A secret version holds at most 64 KiB."
  type        = bool
  default     = false
}
