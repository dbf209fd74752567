// Package iamperm is iapguard's least-privilege contract: one table mapping
// every Google API method iapguard calls to the IAM permissions that call
// needs. The custom roles that deployment creates are generated from it
// (iapctl deploy role; deploy/iam/*.yaml; deploy/terraform/role.auto.tfvars.json),
// and a test at the transport seam fails when the code calls a method that is
// not in the table (Check), so a new API call cannot ship without a
// deliberate permission decision.
//
// Method keys are the emulator's (emulator/core): gRPC methods as
// "google.cloud.run.v2.Services.GetService", REST methods as
// "compute.backendServices.patch".
//
// Where the emulator differs from Google: the emulator checks no permissions
// at all, so nothing here is exercised locally. Each entry records how
// confident we are in it (Confidence); docs/deploy.md lists the unverified
// ones.
package iamperm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"
)

// Who calls a method.
const (
	// WhoFunction: the deployed EnforceIAP function calls it (and so do the
	// iapctl commands that run the same reconciler, e.g. iapctl enforce).
	WhoFunction = "function"
	// WhoOperator: only the operator tool iapctl calls it.
	WhoOperator = "operator"
)

// Confidence says how well an entry was checked against Google's material.
type Confidence string

const (
	// Documented: Google's documentation states that this method needs
	// exactly these permissions.
	Documented Confidence = "documented"
	// NameOnly: every permission name is confirmed to exist (Google's role
	// listings), but the method→permission mapping follows the API's
	// convention (e.g. Compute's "<collection>.<verb>", patch → update)
	// rather than a page that states it.
	NameOnly Confidence = "name-only"
	// Unverified: Google documents no permission for this method; the entry
	// is our best, conservative reading. Check it on a real project.
	Unverified Confidence = "unverified"
)

// Entry maps one API method to the IAM permissions one call needs.
type Entry struct {
	// Method is the emulator's method key.
	Method string
	// Permissions are all the permissions one call needs, sorted.
	Permissions []string
	// OnResource names the permissions of Permissions that deployment grants
	// on one resource (a topic, a service account) instead of through the
	// project-level custom role; the value says on what. CustomRole leaves
	// them out.
	OnResource map[string]string
	// Who is WhoFunction or WhoOperator.
	Who string
	// Confidence is how well this entry was checked.
	Confidence Confidence
	// Note explains the entry: the source, and anything surprising.
	Note string
}

// table is the single source of truth. Keep it sorted by Method: one entry
// per method the code calls (TestTableDerivedFromCalls reads the call sites
// and checks the table both ways), so a new call is one new entry.
var table = []Entry{
	{
		Method:      "compute.backendServices.aggregatedList",
		Permissions: []string{"compute.backendServices.list", "compute.regionBackendServices.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note: "finds the backend services (global and regional) whose backends include a serverless NEG; " +
			"the aggregated list also returns regional backend services, hence both list permissions",
	},
	{
		Method:      "compute.backendServices.get",
		Permissions: []string{"compute.backendServices.get"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "reads a global backend service and its fingerprint",
	},
	{
		Method:      "compute.backendServices.patch",
		Permissions: []string{"clientauthconfig.clients.create", "clientauthconfig.clients.getWithSecret", "compute.backendServices.update"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note: "sets iap.enabled=true with the fingerprint; the seed (\"Turning on IAP\") lists exactly these three " +
			"permissions for turning IAP on (the clientauthconfig ones cover the Google-managed OAuth client)",
	},
	{
		Method:      "compute.forwardingRules.list",
		Permissions: []string{"compute.forwardingRules.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "checks that a regional HTTPS frontend exists (regional external/internal ALB; warning only)",
	}, {
		Method:      "compute.globalForwardingRules.list",
		Permissions: []string{"compute.globalForwardingRules.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "checks that an HTTPS frontend exists (warning only)",
	},

	{
		Method:      "compute.globalOperations.wait",
		Permissions: []string{"compute.globalOperations.get"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "waits for the operation a global backend service patch returns; Compute has no separate wait permission",
	},
	{
		Method:      "compute.regionBackendServices.get",
		Permissions: []string{"compute.regionBackendServices.get"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "reads a regional backend service and its fingerprint",
	},
	{
		Method:      "compute.regionBackendServices.patch",
		Permissions: []string{"clientauthconfig.clients.create", "clientauthconfig.clients.getWithSecret", "compute.regionBackendServices.update"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note: "sets iap.enabled=true on a regional backend service; the regional counterpart of the seed's " +
			"global list (regional backend services have their own permissions)",
	},
	{
		Method:      "compute.regionNetworkEndpointGroups.get",
		Permissions: []string{"compute.regionNetworkEndpointGroups.get"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note: "reads a serverless NEG (cloudRun.service) named by a backend; regional NEGs have their own " +
			"permissions, not compute.networkEndpointGroups.* (those are for zonal NEGs)",
	},
	{
		Method:      "compute.regionNetworkEndpointGroups.list",
		Permissions: []string{"compute.regionNetworkEndpointGroups.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "finds the serverless NEGs pointing at a Cloud Run service",
	},

	{
		Method:      "compute.regionOperations.wait",
		Permissions: []string{"compute.regionOperations.get"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "waits for the operation a regional backend service patch returns; Compute has no separate wait permission",
	},
	{
		Method:      "compute.regionTargetHttpsProxies.list",
		Permissions: []string{"compute.regionTargetHttpsProxies.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "follows a regional URL map to its target HTTPS proxy (IAP needs an HTTPS frontend)",
	},

	{
		Method:      "compute.targetHttpsProxies.list",
		Permissions: []string{"compute.targetHttpsProxies.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note:        "follows a global URL map (named in the backend service's usedBy) to its target HTTPS proxy (IAP needs an HTTPS frontend)",
	},

	{
		Method:      "google.cloud.asset.v1.AssetService.SearchAllResources",
		Permissions: []string{"cloudasset.assets.searchAllResources"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note: "sweeps, whole-project replays and iapctl's every-region scans find the Cloud Run services of a project, " +
			"folder or organisation in one paged search (assetpb SearchAllResourcesRequest.scope: \"The caller must be " +
			"granted the cloudasset.assets.searchAllResources permission on the desired scope\"); the API " +
			"cloudasset.googleapis.com must be enabled in the function's project. A sweep over a folder or organisation " +
			"needs the permission there (roles/cloudasset.viewer on it); without it the per-region listing runs instead",
	},
	{
		Method:      "google.cloud.resourcemanager.v3.Folders.GetFolder",
		Permissions: []string{"resourcemanager.folders.get"},
		OnResource: map[string]string{
			"resourcemanager.folders.get": "each folder listed in IAPGUARD_PROJECTS, only when the scope has folder entries (roles/browser on the folder)",
		},
		Who:        WhoFunction,
		Confidence: Documented,
		Note: "only with folders/N entries in the scope: walks a project's ancestry up to a listed folder, one call per " +
			"folder not yet cached (Resource Manager v3 folders.get reference: resourcemanager.folders.get on the folder). " +
			"Granted on the listed folders, it reaches their sub-folders and nothing else; a refusal puts the project " +
			"out of scope. Not in the custom role, whose project-level grant could not give it",
	},
	{
		Method:      "google.cloud.resourcemanager.v3.Folders.ListFolders",
		Permissions: []string{"resourcemanager.folders.list"},
		OnResource: map[string]string{
			"resourcemanager.folders.list": "each folder listed in --scope (roles/browser on the folder)",
		},
		Who:        WhoOperator,
		Confidence: Documented,
		Note: "iapctl --all-projects with folders/N in the scope walks each listed folder's sub-folders " +
			"(Resource Manager v3 folders.list reference: resourcemanager.folders.list on the parent)",
	},
	{
		Method:      "google.cloud.resourcemanager.v3.Projects.GetProject",
		Permissions: []string{"resourcemanager.projects.get"},
		OnResource: map[string]string{
			"resourcemanager.projects.get": "each folder listed in IAPGUARD_PROJECTS, only when the scope has folder entries (roles/browser on the folder, inherited by its projects)",
		},
		Who:        WhoFunction,
		Confidence: Documented,
		Note: "only with folders/N entries in the scope: reads the parent of an event's project that no id or pattern " +
			"entry allows, then cached (Resource Manager v3 projects.get reference). Google answers PERMISSION_DENIED for " +
			"a project the caller may not see, which puts it out of scope. The function's role does not include it: " +
			"without folder entries the function never calls Resource Manager",
	},
	{
		Method:      "google.cloud.resourcemanager.v3.Projects.SearchProjects",
		Permissions: []string{"resourcemanager.projects.get"},
		Who:         WhoOperator,
		Confidence:  Documented,
		Note: "iapctl --all-projects lists the projects a scope with patterns or * names; SearchProjects needs no " +
			"permission of its own and returns only the projects the caller has resourcemanager.projects.get on, " +
			"so the operator needs it on every project in scope (it is in roles/browser and roles/viewer). " +
			"The function never lists projects",
	},
	{
		Method:      "google.cloud.run.v2.Services.GetIamPolicy",
		Permissions: []string{"run.services.getIamPolicy"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note:        "reads the invoker bindings (Cloud Run IAM reference)",
	},
	{
		Method:      "google.cloud.run.v2.Services.GetService",
		Permissions: []string{"run.services.get"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note:        "reads labels, ingress, invokerIamDisabled, iapEnabled and the etag",
	},
	{
		Method:      "google.cloud.run.v2.Services.ListServices",
		Permissions: []string{"run.services.list"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note:        "region replays, and the per-region discovery when Cloud Asset is off or denied (never the \"-\" location: Cloud Run v2 refuses it)",
	},
	{
		Method:      "google.cloud.run.v2.Services.SetIamPolicy",
		Permissions: []string{"run.services.setIamPolicy"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note:        "adds the IAP agent's invoker binding and removes allUsers/allAuthenticatedUsers, with the etag",
	},
	{
		Method:      "google.cloud.run.v2.Services.UpdateService",
		Permissions: []string{"iam.serviceAccounts.actAs", "run.services.update"},
		OnResource: map[string]string{
			"iam.serviceAccounts.actAs": "each runtime service account of the labelled services (roles/iam.serviceAccountUser on that account)",
		},
		Who:        WhoFunction,
		Confidence: Documented,
		Note: "changes ingress, invokerIamDisabled or iapEnabled; Cloud Run checks actAs on the service's runtime " +
			"service account for every update, so it is granted per account, never project-wide",
	},
	{
		Method:      "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion",
		Permissions: []string{"secretmanager.versions.access"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note: "reads the key that signs the access-grant records (IAPGUARD_RECORD_KEY; roles/secretmanager.secretAccessor " +
			"on that one secret only: whoever reads the key can forge records)",
	},
	{
		Method:      "google.logging.v2.LoggingServiceV2.ListLogEntries",
		Permissions: []string{"logging.logEntries.list"},
		Who:         WhoOperator,
		Confidence:  Documented,
		Note: "iapctl reads audit entries to replay or diagnose; Admin Activity audit logs need only " +
			"logging.logEntries.list (Data Access logs would need logging.privateLogEntries.list)",
	},
	{
		Method:      "google.longrunning.Operations.GetOperation",
		Permissions: []string{"run.operations.get"},
		Who:         WhoFunction,
		Confidence:  Documented,
		Note:        "polls the Cloud Run operation an UpdateService returns",
	},

	{
		Method:      "google.pubsub.v1.Publisher.Publish",
		Permissions: []string{"pubsub.topics.publish"},
		OnResource: map[string]string{
			"pubsub.topics.publish": "the outcomes topic (function), the replay topic (function: a sweep publishes one replay per labelled service; operator: replay --via-topic), roles/pubsub.publisher on the topic",
		},
		Who:        WhoFunction,
		Confidence: Documented,
		Note:       "publishes outcomes; granted on the topic so the function cannot publish anywhere else",
	},
	{
		Method:      "iap.getIamPolicy",
		Permissions: []string{"iap.web.getIamPolicy", "iap.webServices.getIamPolicy"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note: "who may pass IAP: the backend-service / cloud_run-REGION resources are webServices, projects/N/iap_web " +
			"is web (IAP's getIamPolicy reference lists iap.<kind>.getIamPolicy per resource type); read when IAP is " +
			"turned on or an iap-access policy is declared, and by iapctl audit/doctor",
	},
	{
		Method:      "iap.setIamPolicy",
		Permissions: []string{"iap.webServices.setIamPolicy"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note: "grants and revokes roles/iap.httpsResourceAccessor for members of a declared iap-access policy " +
			"(never members iapguard did not add); only on webServices resources, never project-wide",
	},
	{
		Method:      "run.projects.locations.list",
		Permissions: []string{"run.locations.list"},
		Who:         WhoFunction,
		Confidence:  NameOnly,
		Note: "the per-region discovery (Cloud Asset off or denied) lists the regions where Cloud Run is available to a " +
			"project (Cloud Run Admin API v1 projects.locations.list), then ListServices in each: Cloud Run v2 refuses " +
			"the \"-\" location. run.locations.list is in roles/run.viewer; the method-to-permission mapping follows " +
			"the API's convention",
	},
	{
		Method:      "serviceusage.operations.get",
		Permissions: []string{"serviceusage.services.use"},
		Who:         WhoFunction,
		Confidence:  Unverified,
		Note: "polls a generateServiceIdentity operation that is not done; Google's Service Usage access-control " +
			"table names no permission for operations.get on these operations",
	},
	{
		Method:      "serviceusage.services.generateServiceIdentity",
		Permissions: []string{"serviceusage.services.use"},
		Who:         WhoFunction,
		Confidence:  Unverified,
		Note: "creates or returns the IAP service agent; Google documents OAuth scopes only (firebase-tools#11005 " +
			"reports no consumer-project permission is checked). serviceusage.services.use is the conservative " +
			"choice (it is in roles/serviceusage.serviceUsageConsumer); drop it once verified unnecessary",
	},
}

// Table returns a copy of the permission table, sorted by Method.
func Table() []Entry {
	out := make([]Entry, len(table))
	for i, e := range table {
		e.Permissions, e.OnResource = slices.Clone(e.Permissions), maps.Clone(e.OnResource)
		out[i] = e
	}
	return out
}

// permissionRE is the shape of an IAM permission: service.resource.verb,
// the service lower case, the other segments lower camel case; a few
// services nest resources (service.parent.child.verb), so more than three
// segments are allowed.
var permissionRE = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z][A-Za-z0-9]*){2,}$`)

// ValidPermission reports whether p has the service.resource.verb shape.
func ValidPermission(p string) bool { return permissionRE.MatchString(p) }

// RoleDefinition is a custom role in the form gcloud iam roles create/update
// --file accept (YAML or JSON); ID is the role id passed on the command line.
type RoleDefinition struct {
	ID                  string   `yaml:"-" json:"-"`
	Title               string   `yaml:"title" json:"title"`
	Description         string   `yaml:"description" json:"description"`
	Stage               string   `yaml:"stage" json:"stage"`
	IncludedPermissions []string `yaml:"includedPermissions" json:"includedPermissions"`
}

// YAML encodes r as gcloud iam roles create --file reads it (two-space
// indentation, the field order above).
func (r RoleDefinition) YAML() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encoding role %s as YAML: %w", r.ID, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding role %s as YAML: %w", r.ID, err)
	}
	return b.Bytes(), nil
}

// JSON encodes r as indented JSON with a trailing newline.
func (r RoleDefinition) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding role %s as JSON: %w", r.ID, err)
	}
	return append(b, '\n'), nil
}

// Role ids of the generated custom roles.
const (
	FunctionRoleID = "iapguardEnforcer"
	OperatorRoleID = "iapguardOperator"
)

// CustomRole generates the custom role for who (WhoFunction or WhoOperator):
// the sorted, deduplicated project-level permissions of every entry that
// principal needs — WhoFunction entries for the function; every entry for
// the operator, who also runs the reconciler (iapctl enforce). Permissions
// listed in an entry's OnResource are left out: deployment grants them on
// that resource.
func CustomRole(who string) (RoleDefinition, error) {
	var r RoleDefinition
	switch who {
	case WhoFunction:
		r = RoleDefinition{
			ID:    FunctionRoleID,
			Title: "iapguard enforcer",
			Description: "Least privilege for the iapguard EnforceIAP function: read Cloud Run services and " +
				"load balancer wiring, fix ingress/IAM/IAP. Generated from internal/iamperm.",
		}
	case WhoOperator:
		r = RoleDefinition{
			ID:    OperatorRoleID,
			Title: "iapguard operator",
			Description: "What iapctl needs to audit, enforce, replay and diagnose: the enforcer's permissions " +
				"plus reading audit logs and IAP access policies. Generated from internal/iamperm.",
		}
	default:
		return RoleDefinition{}, fmt.Errorf("generating custom role: unknown principal %q (want %q or %q)", who, WhoFunction, WhoOperator)
	}
	r.Stage = "GA"
	for _, e := range table {
		if who == WhoFunction && e.Who != WhoFunction {
			continue
		}
		for _, p := range e.Permissions {
			if _, onResource := e.OnResource[p]; !onResource {
				r.IncludedPermissions = append(r.IncludedPermissions, p)
			}
		}
	}
	slices.Sort(r.IncludedPermissions)
	r.IncludedPermissions = slices.Compact(r.IncludedPermissions)
	return r, nil
}

// ResourceGrants returns, for who (WhoFunction or WhoOperator, as for
// CustomRole), the permissions deployment grants on a resource rather than
// through the custom role, each mapped to the resource it is granted on.
func ResourceGrants(who string) map[string]string {
	out := map[string]string{}
	for _, e := range table {
		if who == WhoFunction && e.Who != WhoFunction {
			continue
		}
		maps.Copy(out, e.OnResource)
	}
	return out
}
