package deploy

import "slices"

// The deployer permission table: for every gcloud command the deploy
// scripts run and every resource and data source of the Terraform module,
// the IAM permissions the deployer needs, and where. docs/deploy.md tells
// the deployer which roles to hold in each place; TestDeployerRolesCover
// checks, with the role facts below, that those roles hold every
// permission here, and that the table matches what the scripts and the
// module really do (both ways).

// Where the deployer needs a permission.
const (
	// InHost: the host project (DEPLOY_PROJECT, var.project).
	InHost = "host"
	// InHostSecret: the host project, only when the scope lives in a
	// Secret Manager secret (DEPLOY_SCOPE_SECRET, var.scope_in_secret).
	InHostSecret = "host+secret"
	// InProject: each other project in scope (listed, matched by a
	// pattern, or under a folder entry).
	InProject = "project"
	// InOrganization: the organisation (organisation-wide path).
	InOrganization = "organization"
	// InFolder: the sink's folder parent and each folder entry
	// (organisation-wide path).
	InFolder = "folder"
)

// DeployerNeed is what one gcloud command or one Terraform resource type
// needs from the deployer.
type DeployerNeed struct {
	// Command is a gcloud command path ("run deploy", "iam roles create"),
	// or a Terraform type ("resource google_pubsub_topic", "data
	// google_projects").
	Command string
	// Permissions maps where (In*) to the permissions needed there.
	Permissions map[string][]string
	// Note says why, and where the permission is checked when not obvious.
	Note string
}

// SelfGrant is a permission the deployment grants the deployer itself on
// one resource, so no project-wide role has to hold it.
type SelfGrant struct {
	Permission, Role, On string
}

// DeployerSelfGrants: identity.sh and main.tf (deployer_acts_as) grant the
// deployer roles/iam.serviceAccountUser on exactly the two accounts it
// deploys with, using iam.serviceAccounts.setIamPolicy from
// roles/iam.serviceAccountAdmin. run deploy / triggers create (and their
// Terraform resources) check actAs on those accounts.
var DeployerSelfGrants = []SelfGrant{
	{Permission: "iam.serviceAccounts.actAs", Role: "roles/iam.serviceAccountUser", On: "iapguard-enforcer and iapguard-trigger"},
}

func host(p ...string) map[string][]string { return map[string][]string{InHost: p} }

// deployerTable: one row per gcloud command, sorted, then one per Terraform
// type, sorted.
var deployerTable = []DeployerNeed{
	{Command: "artifacts repositories create", Permissions: host("artifactregistry.repositories.create")},
	{Command: "artifacts repositories describe", Permissions: host("artifactregistry.repositories.get")},
	{Command: "config get-value", Permissions: map[string][]string{}, Note: "reads gcloud's local configuration (the active account); no API call"},
	{Command: "eventarc triggers create", Permissions: host("eventarc.triggers.create", "iam.serviceAccounts.actAs"), Note: "actAs on iapguard-trigger (--service-account)"},
	{Command: "eventarc triggers delete", Permissions: host("eventarc.triggers.delete")},
	{Command: "eventarc triggers describe", Permissions: host("eventarc.triggers.get")},
	{Command: "eventarc triggers list", Permissions: host("eventarc.triggers.list")},
	{Command: "eventarc triggers update", Permissions: host("eventarc.triggers.update", "iam.serviceAccounts.actAs"), Note: "actAs on iapguard-trigger (--service-account)"},
	{Command: "iam roles create", Permissions: map[string][]string{InHost: {"iam.roles.create"}, InProject: {"iam.roles.create"}, InOrganization: {"iam.roles.create"}}},
	{Command: "iam roles describe", Permissions: map[string][]string{InHost: {"iam.roles.get"}, InProject: {"iam.roles.get"}, InOrganization: {"iam.roles.get"}}},
	{Command: "iam roles undelete", Permissions: map[string][]string{InHost: {"iam.roles.undelete"}, InProject: {"iam.roles.undelete"}, InOrganization: {"iam.roles.undelete"}}},
	{Command: "iam roles update", Permissions: map[string][]string{InHost: {"iam.roles.update"}, InProject: {"iam.roles.update"}, InOrganization: {"iam.roles.update"}}},
	{Command: "iam service-accounts add-iam-policy-binding",
		Permissions: map[string][]string{
			InHost:    {"iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.setIamPolicy"},
			InProject: {"iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.setIamPolicy"},
		},
		Note: "on iapguard-enforcer and iapguard-trigger in the host; on each project's Compute default service account (NUMBER-compute@…) in that project (the function's actAs grants)"},
	{Command: "iam service-accounts create", Permissions: host("iam.serviceAccounts.create")},
	{Command: "iam service-accounts describe", Permissions: host("iam.serviceAccounts.get")},
	{Command: "logging sinks create", Permissions: map[string][]string{InOrganization: {"logging.sinks.create"}, InFolder: {"logging.sinks.create"}}},
	{Command: "logging sinks describe", Permissions: map[string][]string{InOrganization: {"logging.sinks.get"}, InFolder: {"logging.sinks.get"}}},
	{Command: "logging sinks update", Permissions: map[string][]string{InOrganization: {"logging.sinks.update"}, InFolder: {"logging.sinks.update"}}},
	{Command: "organizations add-iam-policy-binding", Permissions: map[string][]string{InOrganization: {"resourcemanager.organizations.getIamPolicy", "resourcemanager.organizations.setIamPolicy"}}},
	{Command: "projects add-iam-policy-binding", Permissions: map[string][]string{
		InHost:    {"resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"},
		InProject: {"resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"},
	}},
	{Command: "projects describe", Permissions: map[string][]string{InHost: {"resourcemanager.projects.get"}, InProject: {"resourcemanager.projects.get"}}},
	{Command: "projects list", Permissions: map[string][]string{InProject: {"resourcemanager.projects.get"}, InFolder: {"resourcemanager.projects.list"}},
		Note: "lists the projects the caller may get (pattern entries); with parent.id:F, the projects of folder F"},
	{Command: "pubsub schemas commit", Permissions: host("pubsub.schemas.commit")},
	{Command: "pubsub schemas create", Permissions: host("pubsub.schemas.create")},
	{Command: "pubsub schemas describe", Permissions: host("pubsub.schemas.get")},
	{Command: "pubsub schemas validate-message", Permissions: host("pubsub.schemas.validate")},
	{Command: "pubsub subscriptions add-iam-policy-binding", Permissions: host("pubsub.subscriptions.getIamPolicy", "pubsub.subscriptions.setIamPolicy")},
	{Command: "pubsub subscriptions create", Permissions: host("pubsub.subscriptions.create", "pubsub.topics.attachSubscription")},
	{Command: "pubsub subscriptions describe", Permissions: host("pubsub.subscriptions.get")},
	{Command: "pubsub subscriptions update", Permissions: host("pubsub.subscriptions.update"), Note: "the dead-letter policy on the subscriptions Eventarc owns"},
	{Command: "pubsub topics add-iam-policy-binding", Permissions: host("pubsub.topics.getIamPolicy", "pubsub.topics.setIamPolicy")},
	{Command: "pubsub topics create", Permissions: host("pubsub.schemas.attach", "pubsub.topics.create"), Note: "schemas.attach for the outcomes topic's schema"},
	{Command: "pubsub topics describe", Permissions: host("pubsub.topics.get")},
	{Command: "resource-manager folders add-iam-policy-binding", Permissions: map[string][]string{InFolder: {"resourcemanager.folders.getIamPolicy", "resourcemanager.folders.setIamPolicy"}}},
	{Command: "resource-manager folders list", Permissions: map[string][]string{InFolder: {"resourcemanager.folders.list"}}},
	{Command: "run deploy", Permissions: host("iam.serviceAccounts.actAs", "run.services.create", "run.services.get", "run.services.update"), Note: "actAs on iapguard-enforcer (--service-account)"},
	{Command: "run services add-iam-policy-binding", Permissions: host("run.services.getIamPolicy", "run.services.setIamPolicy")},
	{Command: "scheduler jobs create", Permissions: host("cloudscheduler.jobs.create")},
	{Command: "scheduler jobs delete", Permissions: host("cloudscheduler.jobs.delete")},
	{Command: "scheduler jobs describe", Permissions: host("cloudscheduler.jobs.get")},
	{Command: "scheduler jobs list", Permissions: host("cloudscheduler.jobs.list")},
	{Command: "scheduler jobs update", Permissions: host("cloudscheduler.jobs.update")},
	{Command: "secrets add-iam-policy-binding", Permissions: map[string][]string{InHostSecret: {"secretmanager.secrets.getIamPolicy", "secretmanager.secrets.setIamPolicy"}}},
	{Command: "secrets create", Permissions: map[string][]string{InHostSecret: {"secretmanager.secrets.create"}}},
	{Command: "secrets describe", Permissions: map[string][]string{InHostSecret: {"secretmanager.secrets.get"}}},
	{Command: "secrets versions add", Permissions: map[string][]string{InHostSecret: {"secretmanager.versions.add"}}},
	{Command: "services enable", Permissions: map[string][]string{InHost: {"serviceusage.services.enable"}, InProject: {"serviceusage.services.enable"}}},

	// The Terraform module (plan and apply; destroy needs the matching
	// delete permissions).
	{Command: "data google_client_openid_userinfo", Permissions: map[string][]string{}, Note: "reads the provider credentials' email; no IAM permission"},
	{Command: "data google_folders", Permissions: map[string][]string{InFolder: {"resourcemanager.folders.list"}}},
	{Command: "data google_project", Permissions: map[string][]string{InHost: {"resourcemanager.projects.get"}, InProject: {"resourcemanager.projects.get"}}},
	{Command: "data google_projects", Permissions: map[string][]string{InProject: {"resourcemanager.projects.get"}, InFolder: {"resourcemanager.projects.list"}}},
	{Command: "resource google_cloud_run_v2_service", Permissions: host("iam.serviceAccounts.actAs", "run.operations.get", "run.services.create", "run.services.get", "run.services.update")},
	{Command: "resource google_cloud_run_v2_service_iam_member", Permissions: host("run.services.getIamPolicy", "run.services.setIamPolicy")},
	{Command: "resource google_cloud_scheduler_job", Permissions: host("cloudscheduler.jobs.create", "cloudscheduler.jobs.get", "cloudscheduler.jobs.update")},
	{Command: "resource google_eventarc_trigger", Permissions: host("eventarc.operations.get", "eventarc.triggers.create", "eventarc.triggers.get", "eventarc.triggers.update", "iam.serviceAccounts.actAs")},
	{Command: "resource google_folder_iam_member", Permissions: map[string][]string{InFolder: {"resourcemanager.folders.getIamPolicy", "resourcemanager.folders.setIamPolicy"}}},
	{Command: "resource google_logging_folder_sink", Permissions: map[string][]string{InFolder: {"logging.sinks.create", "logging.sinks.get", "logging.sinks.update"}}},
	{Command: "resource google_logging_organization_sink", Permissions: map[string][]string{InOrganization: {"logging.sinks.create", "logging.sinks.get", "logging.sinks.update"}}},
	{Command: "resource google_organization_iam_custom_role", Permissions: map[string][]string{InOrganization: {"iam.roles.create", "iam.roles.get", "iam.roles.update"}}},
	{Command: "resource google_organization_iam_member", Permissions: map[string][]string{InOrganization: {"resourcemanager.organizations.getIamPolicy", "resourcemanager.organizations.setIamPolicy"}}},
	{Command: "resource google_project_iam_custom_role", Permissions: map[string][]string{InHost: {"iam.roles.create", "iam.roles.get", "iam.roles.update"}, InProject: {"iam.roles.create", "iam.roles.get", "iam.roles.update"}}},
	{Command: "resource google_project_iam_member", Permissions: map[string][]string{
		InHost:    {"resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"},
		InProject: {"resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"},
	}},
	{Command: "resource google_project_service", Permissions: map[string][]string{
		InHost:    {"serviceusage.services.enable", "serviceusage.services.get", "serviceusage.services.list"},
		InProject: {"serviceusage.services.enable", "serviceusage.services.get", "serviceusage.services.list"},
	}},
	{Command: "resource google_pubsub_schema", Permissions: host("pubsub.schemas.create", "pubsub.schemas.get")},
	{Command: "resource google_pubsub_subscription", Permissions: host("pubsub.subscriptions.create", "pubsub.subscriptions.get", "pubsub.subscriptions.update", "pubsub.topics.attachSubscription")},
	{Command: "resource google_pubsub_topic", Permissions: host("pubsub.schemas.attach", "pubsub.topics.create", "pubsub.topics.get", "pubsub.topics.update")},
	{Command: "resource google_pubsub_topic_iam_member", Permissions: host("pubsub.topics.getIamPolicy", "pubsub.topics.setIamPolicy")},
	{Command: "resource google_secret_manager_secret", Permissions: map[string][]string{InHostSecret: {"secretmanager.secrets.create", "secretmanager.secrets.get", "secretmanager.secrets.update"}}},
	{Command: "resource google_secret_manager_secret_iam_member", Permissions: map[string][]string{InHostSecret: {"secretmanager.secrets.getIamPolicy", "secretmanager.secrets.setIamPolicy"}}},
	{Command: "resource google_secret_manager_secret_version", Permissions: map[string][]string{InHostSecret: {"secretmanager.versions.add", "secretmanager.versions.get"}}},
	{Command: "resource google_service_account", Permissions: host("iam.serviceAccounts.create", "iam.serviceAccounts.get", "iam.serviceAccounts.update")},
	{Command: "resource google_service_account_iam_member", Permissions: map[string][]string{
		InHost:    {"iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.setIamPolicy"},
		InProject: {"iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.setIamPolicy"},
	}},
}

// DeployerTable returns a copy of the deployer permission table.
func DeployerTable() []DeployerNeed {
	out := make([]DeployerNeed, len(deployerTable))
	for i, n := range deployerTable {
		m := make(map[string][]string, len(n.Permissions))
		for k, v := range n.Permissions {
			m[k] = slices.Clone(v)
		}
		n.Permissions = m
		out[i] = n
	}
	return out
}

// RoleFactsSource names where the role → permission facts below come from.
const RoleFactsSource = "Google's predefined role definitions (includedPermissions), as recorded in the public dataset " +
	"iann0036/iam-dataset, files gcp/roles/ROLE.json (read 2026-12-07); Google's page \"IAM roles and permissions index\" " +
	"lists the same. Only the permissions the deployer table needs are recorded: a role's other permissions are left out."

// RolePermissions are facts, copied as data: for each role the deployment
// docs name, the permissions it includes that the deployer table uses
// (RoleFactsSource). A permission not listed under a role is one the role
// lacks or one the table does not need.
var RolePermissions = map[string][]string{
	"roles/artifactregistry.admin": {"artifactregistry.repositories.create", "artifactregistry.repositories.get", "artifactregistry.repositories.uploadArtifacts"},
	"roles/browser":                {"resourcemanager.folders.get", "resourcemanager.folders.list", "resourcemanager.projects.get", "resourcemanager.projects.list"},
	"roles/cloudscheduler.admin": {"cloudscheduler.jobs.create", "cloudscheduler.jobs.delete", "cloudscheduler.jobs.get",
		"cloudscheduler.jobs.list", "cloudscheduler.jobs.update", "resourcemanager.projects.get"},
	"roles/eventarc.admin": {"eventarc.operations.get", "eventarc.triggers.create", "eventarc.triggers.delete", "eventarc.triggers.get",
		"eventarc.triggers.list", "eventarc.triggers.update", "resourcemanager.projects.get"},
	"roles/iam.organizationRoleAdmin": {"iam.roles.create", "iam.roles.get", "iam.roles.undelete", "iam.roles.update",
		"resourcemanager.organizations.getIamPolicy", "resourcemanager.projects.get", "resourcemanager.projects.list"},
	"roles/iam.roleAdmin": {"iam.roles.create", "iam.roles.get", "iam.roles.undelete", "iam.roles.update",
		"resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy"},
	// No iam.serviceAccounts.actAs: that is roles/iam.serviceAccountUser's.
	"roles/iam.serviceAccountAdmin": {"iam.serviceAccounts.create", "iam.serviceAccounts.get", "iam.serviceAccounts.getIamPolicy",
		"iam.serviceAccounts.setIamPolicy", "iam.serviceAccounts.update", "resourcemanager.projects.get", "resourcemanager.projects.list"},
	"roles/iam.serviceAccountUser": {"iam.serviceAccounts.actAs", "iam.serviceAccounts.get", "resourcemanager.projects.get"},
	"roles/logging.configWriter":   {"logging.sinks.create", "logging.sinks.get", "logging.sinks.update", "resourcemanager.projects.get"},
	"roles/logging.logWriter":      {},
	"roles/pubsub.admin": {"pubsub.schemas.attach", "pubsub.schemas.commit", "pubsub.schemas.create", "pubsub.schemas.get",
		"pubsub.schemas.validate", "pubsub.subscriptions.create", "pubsub.subscriptions.get", "pubsub.subscriptions.getIamPolicy",
		"pubsub.subscriptions.setIamPolicy", "pubsub.subscriptions.update", "pubsub.topics.attachSubscription", "pubsub.topics.create",
		"pubsub.topics.get", "pubsub.topics.getIamPolicy", "pubsub.topics.setIamPolicy", "pubsub.topics.update", "resourcemanager.projects.get"},
	"roles/resourcemanager.folderIamAdmin": {"resourcemanager.folders.get", "resourcemanager.folders.getIamPolicy", "resourcemanager.folders.setIamPolicy"},
	"roles/resourcemanager.organizationAdmin": {"resourcemanager.folders.getIamPolicy", "resourcemanager.folders.list",
		"resourcemanager.folders.setIamPolicy", "resourcemanager.organizations.getIamPolicy", "resourcemanager.organizations.setIamPolicy",
		"resourcemanager.projects.get", "resourcemanager.projects.list"},
	"roles/resourcemanager.projectIamAdmin": {"resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"},
	"roles/run.admin": {"resourcemanager.projects.get", "run.operations.get", "run.services.create", "run.services.get",
		"run.services.getIamPolicy", "run.services.setIamPolicy", "run.services.update"},
	"roles/secretmanager.admin": {"secretmanager.secrets.create", "secretmanager.secrets.get", "secretmanager.secrets.getIamPolicy",
		"secretmanager.secrets.setIamPolicy", "secretmanager.secrets.update", "secretmanager.versions.add", "secretmanager.versions.get"},
	"roles/serviceusage.serviceUsageAdmin": {"serviceusage.services.enable", "serviceusage.services.get", "serviceusage.services.list"},
}
