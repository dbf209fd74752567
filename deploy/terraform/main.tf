locals {
  # Single sources of truth, rendered by iapctl deploy and kept current by
  # go test ./internal/deploy.
  triggers      = jsondecode(file("${path.module}/generated/triggers.json")).triggers
  enforcer_role = jsondecode(file("${path.module}/generated/enforcer-role.json"))

  # The scope: listed project ids, patterns ("team-*") matched against
  # the projects the caller can see when Terraform runs, and folder entries
  # ("folders/N", organisation-wide path only). The patterns and folder
  # entries also go to the function as they are (run.tf), so a project
  # created later is in scope by id at once (under a folder: by id and
  # number), and swept after the next apply.
  scope_folder_entries = distinct([for p in var.projects : p if startswith(p, "folders/")])
  scope_folders        = [for f in local.scope_folder_entries : trimprefix(f, "folders/")]
  scope_patterns       = [for p in var.projects : p if strcontains(p, "*")]
  scope_listed         = [for p in var.projects : p if !strcontains(p, "*") && !startswith(p, "folders/")]
  pattern_regexes = [
    for p in local.scope_patterns : "^${replace(replace(p, ".", "\\."), "*", ".*")}$"
  ]
  pattern_matches = length(local.scope_patterns) == 0 ? [] : [
    for p in data.google_projects.visible[0].projects : p.project_id
    if anytrue([for r in local.pattern_regexes : can(regex(r, p.project_id))])
  ]
  allowlist = length(var.projects) > 0 ? distinct(concat(local.scope_listed, local.pattern_matches)) : [var.project]

  # The projects under the folder entries, for the sweep jobs, the IAP API
  # and the default actAs grants: the projects directly in each listed
  # folder and in its direct sub-folders. google_projects (filter
  # parent.id) and google_folders list direct children only, and plain
  # Terraform cannot recurse to a depth it does not know: projects deeper
  # down are enforced through their events (the function resolves any
  # depth) but get no sweep job unless their folder is listed too
  # (docs/orgwide.md). Projects of the allowlist, by id or by a listed
  # number, are left out.
  scope_subfolders = distinct(flatten([
    for f in local.scope_folders : [
      for sub in data.google_folders.scope[f].folders : trimprefix(sub.name, "folders/")
      if sub.state == "ACTIVE" && !contains(local.scope_folders, trimprefix(sub.name, "folders/"))
    ]
  ]))
  folder_projects_found = flatten([for f, d in data.google_projects.in_folder : d.projects])
  folder_project_numbers = {
    for p in local.folder_projects_found : p.project_id => tostring(p.number)
  }
  folder_projects = distinct([
    for p in local.folder_projects_found : p.project_id
    if !contains(local.allowlist, p.project_id) && !contains(local.allowlist, tostring(p.number))
  ])

  # Every project the deployment knows to be in scope.
  scope_projects = concat(local.allowlist, local.folder_projects)

  # The replay trigger's topic, named in eventarc/triggers.yaml.
  replay_topic = one(distinct([for t in values(local.triggers) : t.topic if t.topic != ""]))

  runtime_service_accounts = length(var.runtime_service_accounts) > 0 ? var.runtime_service_accounts : concat(
    [for p in local.allowlist : "${data.google_project.allowlisted[p].number}-compute@developer.gserviceaccount.com"],
    [for p in local.folder_projects : "${local.folder_project_numbers[p]}-compute@developer.gserviceaccount.com"],
  )

  pubsub_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # The function's own project is charged for every API it calls.
  apis = [
    "artifactregistry.googleapis.com",
    "cloudasset.googleapis.com", # sweeps and whole-project replays search Cloud Asset Inventory
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iap.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "serviceusage.googleapis.com",
  ]
  # The scope in a secret (var.scope_in_secret) needs Secret Manager.
  apis_enabled = concat(local.apis, var.scope_in_secret ? ["secretmanager.googleapis.com"] : [])
}

data "google_project" "this" {
  project_id = var.project
}

# Every active project the caller can see, to match the scope's patterns.
data "google_projects" "visible" {
  count  = length(local.scope_patterns) > 0 ? 1 : 0
  filter = "lifecycleState:ACTIVE"
}

# The direct sub-folders of each folder entry.
data "google_folders" "scope" {
  for_each  = toset(local.scope_folders)
  parent_id = "folders/${each.value}"
}

# The active projects directly in each folder entry and each of its direct
# sub-folders.
data "google_projects" "in_folder" {
  for_each = toset(concat(local.scope_folders, local.scope_subfolders))
  filter   = "parent.type:folder parent.id:${each.value} lifecycleState:ACTIVE"
}

data "google_project" "allowlisted" {
  for_each   = toset(local.allowlist)
  project_id = each.value
}

resource "google_project_service" "apis" {
  for_each           = var.enable_apis ? toset(local.apis_enabled) : toset([])
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# IAP's service agent and toggle need the IAP API in every allowlisted project.
resource "google_project_service" "iap" {
  for_each           = var.enable_apis ? toset([for p in local.scope_projects : p if p != var.project]) : toset([])
  project            = each.value
  service            = "iap.googleapis.com"
  disable_on_destroy = false
}

resource "google_service_account" "enforcer" {
  project      = var.project
  account_id   = "iapguard-enforcer"
  display_name = "iapguard enforcer (EnforceIAP function)"
}

resource "google_service_account" "trigger" {
  project      = var.project
  account_id   = "iapguard-trigger"
  display_name = "iapguard Eventarc triggers"
}

# The least-privilege role generated from internal/iamperm, in every
# allowlisted project, granted there to the function only. The
# organisation-wide path grants one organisation-level role instead (org.tf).
resource "google_project_iam_custom_role" "enforcer" {
  for_each    = local.org_mode ? toset([]) : toset(local.allowlist)
  project     = each.value
  role_id     = local.enforcer_role.role_id
  title       = local.enforcer_role.title
  description = local.enforcer_role.description
  stage       = local.enforcer_role.stage
  permissions = local.enforcer_role.permissions
}

resource "google_project_iam_member" "enforcer" {
  for_each = google_project_iam_custom_role.enforcer
  project  = each.value.project
  role     = each.value.name
  member   = "serviceAccount:${google_service_account.enforcer.email}"
}

# Cloud Run checks iam.serviceAccounts.actAs on the runtime service account
# for every UpdateService: granted per account, never project-wide.
resource "google_service_account_iam_member" "enforcer_acts_as_runtime" {
  for_each           = toset(local.runtime_service_accounts)
  service_account_id = "projects/-/serviceAccounts/${each.value}"
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.enforcer.email}"
}

# The deployer acts as exactly the two accounts it deploys with: creating
# the Cloud Run service (template.service_account) and the Eventarc triggers
# (service_account) checks iam.serviceAccounts.actAs on them, which
# roles/iam.serviceAccountAdmin does not hold. Never project-wide.
data "google_client_openid_userinfo" "deployer" {
  count = var.deployer == "" ? 1 : 0
}

locals {
  deployer_email = var.deployer == "" ? data.google_client_openid_userinfo.deployer[0].email : ""
  deployer = var.deployer != "" ? var.deployer : (
    endswith(local.deployer_email, ".gserviceaccount.com") ? "serviceAccount:${local.deployer_email}" : "user:${local.deployer_email}"
  )
}

resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = {
    enforcer = google_service_account.enforcer.name
    trigger  = google_service_account.trigger.name
  }
  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = local.deployer
}

# Push deliveries to the function carry a token minted for the trigger
# identity; Pub/Sub service agents created before 2021-04-08 need this role
# for that (harmless for newer ones). Granted on that account only.
resource "google_service_account_iam_member" "pubsub_agent_mints_trigger_tokens" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_agent}"
  depends_on         = [google_project_service.apis]
}

resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}
