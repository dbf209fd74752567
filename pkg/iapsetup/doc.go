// Package iapsetup keeps Cloud Run services labelled iap=enabled behind
// Identity-Aware Proxy: it reads the desired state from labels, observes the
// live state, computes a plan of named steps and applies it. It holds no
// transport code.
//
// # The API
//
// Build one Reconciler per process with New(Deps, Options). Deps are the
// Google APIs it talks to, one small interface each (deps.go): CloudRun,
// Compute, AgentIdentity (Service Usage) and, optional, IAPPolicies and
// RecordKeys (Secret Manager); internal/gcp implements them over the
// official clients. Options.Scope, a ScopeCheck such as
// pkg/iapsetup/scope's Scope, names the projects iapguard may touch; the
// other options have defaults.
//
// Reconcile(ctx, ServiceRef) makes one service comply and returns a Result:
// outcome, mode, steps and changes in pkg/outcome's vocabulary.
// ResolveBackend, ResolveNEG and ResolveRegion map what an event names (a
// backend service, a NEG, a region) to the Candidates behind it, which the
// caller reconciles one by one. Diagnose is the dry run behind iapctl
// doctor; Unenforced is the labels-only verdict audits give the services
// they list but do not reconcile. Errors classify as ErrTransient or
// ErrPermanent (see Errors below).
//
// # The path of one event
//
// Read top-down, from the function's CloudEvent to the Compute PATCH that
// turns IAP on for a backend service in front of a labelled service:
//
//  1. functions.EnforceIAP (functions/function.go): the registered HTTP
//     function; LazyHTTPHandler builds the Handler on the first event.
//  2. serveEvent (functions/http.go): the request becomes a CloudEvent.
//  3. Handler.Handle (functions/handler.go): internal/event.Decode turns
//     the audit entry into what it names; admission, stale and foreign
//     events acknowledged without work.
//  4. Handler.reconcile (functions/handler.go): a service is reconciled
//     (coalesced per service); a backend service, NEG or region is first
//     mapped to its services by ResolveBackend, ResolveNEG or ResolveRegion
//     (resolve.go), and reconcileEach reconciles each one.
//  5. Reconciler.Reconcile (reconcile.go), the one entry point: scope
//     check, then observe → plan → apply.
//  6. Reconciler.observe (observe.go): the first read round, concurrently.
//  7. planFor (plan.go): the pure plan, one part per resource to write
//     (planBackend for each fronting backend service).
//  8. Reconciler.apply (apply.go): writes the IAM policy while complete
//     (reconcile.go) makes the second read round and re-plans; then the
//     access grants, then the service and backend services. It returns a
//     record of what it did; the Result is reported from plan and record.
//  9. Reconciler.writeBackend (apply.go): checkBackendWrite (guard.go),
//     then a bounded retry on 412.
//  10. gcp.ComputeAdapter.EnableIAP (internal/gcp/compute.go): the
//     backendServices.patch with the fingerprint, and its operation.
//
// The Result goes back up to step 4, and Handle publishes it as an outcome
// message (pkg/outcome).
//
// # Compliance (DESIGN.md "Compliance")
//
// For a service S labelled iap=enabled, the steps are:
//
//   - agent-identity: the project's IAP service agent exists
//     (generateServiceIdentity; cached per Reconciler).
//   - invoker-binding: the agent holds roles/run.invoker on S.
//   - iam-auth: no allUsers/allAuthenticatedUsers in roles/run.invoker (in
//     any binding, conditional or not), and invokerIamDisabled=false.
//   - ingress: in load-balancer mode, INGRESS_TRAFFIC_ALL becomes
//     INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER; stricter settings are kept and
//     reported; in direct mode, ingress is left alone.
//   - backend-iap (one per fronting backend service): iap.enabled=true;
//     Cloud CDN on → conflict, not enabled; no HTTPS frontend → warning, still
//     enabled. A backend service fronts S when one of its backends[].group is
//     a serverless NEG in S's project and region whose cloudRun.service is S
//     (references compared version-agnostically); NEGs that select services
//     by URL mask only are reported as warnings.
//   - direct-iap: no fronting backend service → Cloud Run's built-in IAP
//     (iapEnabled=true). A service that already has it stays in direct
//     mode when backend services front it later: built-in IAP guards the
//     load balancer path too and Google does not support IAP on both, so
//     backend IAP is not enabled (backend-iap says how to move to
//     load-balancer IAP); Cloud CDN on such a backend is still a conflict.
//   - access (one per IAP resource: each fronting backend service with IAP
//     in load-balancer mode, projects/N/iap_web/cloud_run-R/services/S in
//     direct mode): who holds roles/iap.httpsResourceAccessor there or on
//     the project's iap_web. With the label iap-access=POLICY, the members
//     of that access policy (Options.AccessPolicies) are granted, and those
//     iapguard granted before (its signed record, annotation
//     iapguard.dev/access-granted) that the policy dropped are revoked;
//     members anyone else granted are never touched. Unknown policy →
//     rejected, nothing granted (IAP is still enforced). Nobody can pass →
//     warning. See access.go and docs/access.md.
//
// Label absent or iap=disabled → skipped; any other value → rejected. A
// service iapguard enforced before (annotation iapguard.dev/managed,
// signed: marker.go) that loses its label → opted-out (a marker iapguard
// cannot verify → skipped, saying so). Nothing is ever turned off. An
// enforced service that lacks the marker gets it with the first
// remediation's service update or, when nothing else is to be written, in
// an update of its own (a remediated outcome whose one change is the
// marker; dry runs plan it like any other change).
//
// # Reads and writes
//
// The first read round is concurrent: service, IAM policy, agent (cached),
// the region's serverless NEGs and the project's backend services. A
// second round, only where the first shows it is needed, reads the IAP
// policies that decide who may pass (the project-wide one cached) and
// checks the HTTPS frontend of backend services about to change; it
// overlaps the IAM policy write. A warm compliant service costs four reads
// (five with an access policy) and no write.
//
// Every write is made in apply.go, one per resource (SetIamPolicy,
// UpdateService with an explicit mask, a patch per backend service), each a
// read-modify-write guarded by the resource's etag or fingerprint; a
// conflict (ABORTED / 412) re-reads that resource, recomputes its part and
// retries, bounded. The IAM write goes first and, if it fails, nothing else
// is written (IAP must not be switched on before its agent may invoke the
// service); access grants come next, so that someone may pass once IAP is
// on (a failed grant does not stop enforcement). Every write passes a guard
// (guard.go) that refuses, as a bug, anything that would add a public
// member, drop a foreign binding, member or annotation, grant a member the
// access policy does not list, revoke one iapguard did not grant, loosen
// ingress, or be sent without a precondition; turning IAP off or disabling
// the invoker IAM check cannot even be expressed.
//
// Dry runs plan and report: IAM, IAP and Compute writes are skipped, the
// service update is sent with validate_only, and generateServiceIdentity
// (idempotent; it grants nothing) is still called.
//
// # Errors
//
// Reconcile returns a Result for every service, and an error when it could
// not finish: errors.Is(err, ErrTransient) (throttling, unavailability,
// deadlines, conflicts left after retries) means redelivery is worthwhile;
// ErrPermanent (permission denied, invalid, refused unsafe writes) means a
// person must act, and Result.Reason says what, usually with a gcloud
// command. A missing service is skipped with no error. A project outside
// Options.Scope is rejected before any call to it (a scope with folder
// entries may first read the project's ancestry, cached); a resolver
// refuses it with a *ScopeError, whose Result the caller reports.
package iapsetup
