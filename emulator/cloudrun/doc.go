// Package cloudrun emulates the Cloud Run Admin API v2 over gRPC:
// google.cloud.run.v2.Services (CreateService, GetService, ListServices,
// UpdateService, DeleteService, GetIamPolicy, SetIamPolicy,
// TestIamPermissions) and the google.longrunning.Operations mixin
// (GetOperation, WaitOperation, ListOperations, DeleteOperation), so that the
// official client cloud.google.com/go/run/apiv2 works unchanged, op.Wait
// included. The same methods are served over REST/JSON under /v2/ (ServeREST,
// rest.go), for run.NewServicesRESTClient and recorded REST traffic.
// Behaviour follows shared/reference/gcp-api-behaviour.md §0.1 and §1.
//
// # Contract
//
//   - Register the surface on a grpc.Server that has the emulator core's
//     interceptor (core.UnaryServerInterceptor): handlers do not call
//     core.Begin themselves, so call accounting, latency, injected errors and
//     quotas (RESOURCE_EXHAUSTED) come from the interceptor.
//   - Resource names accept the project ID or number and are echoed in the
//     form the caller used; storage is keyed by project ID. Audit entries use
//     the project ID.
//   - Create, Update and Delete return operations named
//     projects/P/locations/R/operations/UUID whose metadata is Any(Service);
//     once done, response is Any(Service) (for Delete: the deleted service).
//     Options.LRO decides when they finish: on-first-poll (default),
//     immediate, or after a delay during which the service is reconciling.
//   - Every accepted Create/Update/Delete/SetIamPolicy writes one Admin
//     Activity audit entry (serviceName run.googleapis.com, resource type
//     cloud_run_revision). Rejected calls and validate_only calls write none.
//   - Etag preconditions: a service etag (Update, Delete) or policy etag
//     (SetIamPolicy) that is not current → ABORTED; an empty etag → no check.
//     core.Faults.ForceRaces on google.cloud.run.v2.Services.UpdateService,
//     .DeleteService or .SetIamPolicy changes the stored etag just before the
//     check, as a concurrent writer would; a race is only taken by a call
//     that carries an etag, since only those are precondition-checked.
//
// # Known deviations from Google
//
//   - Unknown projects yield 403 PERMISSION_DENIED "Permission denied on
//     resource project X." as on Google, but without Google's ErrorInfo
//     detail (reason CONSUMER_INVALID).
//   - No IAM enforcement: every caller may do everything. TestIamPermissions
//     returns every requested permission that starts with "run." (wildcards →
//     INVALID_ARGUMENT); it answers NOT_FOUND for a missing service [INFER].
//   - ListServices refuses location "-" with INVALID_ARGUMENT: the v2 proto
//     comment says the wildcard is not allowed (the status is inferred; no
//     recorded answer). show_deleted is
//     ignored: deleted services are forgotten at once (no tombstones until
//     expire_time). Page size defaults to 100 and is capped at 1000.
//   - UpdateService without update_mask (or with "*") replaces the whole
//     writable spec, as Terraform relies on; AIP-134 would merge only the
//     populated fields. Mask paths are proto field names (snake_case; a
//     lowerCamelCase path is INVALID_ARGUMENT over gRPC, as on Google), may
//     descend into singular messages (template.timeout,
//     scaling.min_instance_count) and may name one map entry (labels.team,
//     annotations.`iapguard.dev/managed`). Paths naming output-only fields,
//     name or etag are ignored (AIP-203); unknown paths → INVALID_ARGUMENT.
//     Request fields outside the mask are not validated. When allow_missing
//     creates the service, the whole request service is used and the mask is
//     ignored.
//   - generation increases on every accepted update, even one that changes
//     nothing. The etag changes on every accepted write but not when a
//     delayed rollout completes.
//   - A new revision is created only when template changes (any field,
//     including template.labels/annotations/revision) or force_new_revision
//     is set; revisions are named {service}-{NNNNN}-{xyz} with NNNNN counting
//     revisions. Revisions are not an API here (no Revisions service), are
//     never garbage-collected, and traffic targets naming a revision are not
//     checked for existence.
//   - Rollouts always succeed: no injectable rollout failure (terminal
//     condition CONDITION_FAILED, operation error). Conditions are a fixed
//     Ready/RoutesReady/ConfigurationsReady set. No system_event audit entries
//     ("service became ready") are written.
//   - Delete removes the service (and its IAM policy) immediately in every LRO
//     mode; only the operation lags. The deleted service carries delete_time
//     and an expire_time 30 days later [INFER].
//   - validate_only returns a finished operation with the would-be service as
//     metadata and response; it is not stored, so polling it → NOT_FOUND.
//   - On-first-poll: the service itself is settled (reconciling=false) at once;
//     only the operation waits for its first GetOperation/WaitOperation.
//     ListOperations does not count as a poll.
//   - WaitOperation without timeout waits until done or until the call's
//     deadline. CancelOperation is UNIMPLEMENTED. ListOperations filters
//     understand only done=true/done=false. At most 10,000 operations are kept.
//   - Server-side defaults are the ones observed in real traffic (§1.3):
//     launch_stage GA, ingress ALL, traffic LATEST 100, template timeout 300s,
//     max_instance_request_concurrency 80, service account
//     NUMBER-compute@developer.gserviceaccount.com, container limits cpu 1000m
//     and memory 512Mi. launch_stage is echoed as sent (Google may lower it to
//     the stage of the features used).
//   - uri is https://{service}-{hash}-{code}.a.run.app with a hash derived from
//     the project ID and a region code from a small table (initials
//     otherwise) [INFER]; urls also lists https://{service}-{NUMBER}.{region}.run.app.
//   - A create without service_id gets a generated id ("service-xxxxxxxx").
//   - Validation enforced (→ INVALID_ARGUMENT naming the field): parent/name
//     format (region must look like us-central1), service_id rules, template
//     present with at least one container image, GCP label rules (≤64 labels,
//     key/value syntax) on service and template labels, Kubernetes annotation
//     key syntax and 256 KiB total, the reserved label/annotation namespaces
//     run.googleapis.com/, cloud.googleapis.com/, serving.knative.dev/ and
//     autoscaling.knative.dev/ (other prefixes such as iapguard.dev/ are
//     fine), description ≤512 characters, enum values defined by the proto
//     (anywhere in the Service), traffic percentages 0..100 summing to 100, a
//     caller-chosen template.revision prefixed by the service name. Reusing
//     an existing revision name → ALREADY_EXISTS. Other fields (container
//     ports, probes, volumes, VPC access, scaling bounds, ...) are stored
//     unchecked.
//   - IAM policies: version must be 0, 1 or 3 and conditional bindings need
//     3; roles must look like roles/X, projects/P/roles/X or
//     organizations/O/roles/X (existence is not checked); members must be
//     well-formed principals; audit_configs → INVALID_ARGUMENT [INFER];
//     at most 1,500 members. Stored policies are normalised (same-role
//     bindings merged, members deduplicated and sorted, bindings sorted by
//     role, version 1 or 3). A never-set policy has etag "ACAB"; new etags are
//     8 random bytes starting 0x07. GetIamPolicy ignores
//     requested_policy_version below 3 for conditional policies (Google
//     rewrites conditional role names for old versions).
//   - Audit entries: request is the protojson of the v2 request and response
//     the v2 Service (or google.iam.v1.Policy); real Cloud Run writes a
//     v1-shaped (Knative) response. resource.labels configuration_name and
//     revision_name are empty, and service_name is empty for SetIamPolicy, as
//     observed. No operation member is written.
package cloudrun
