// Package emulator runs iapguard's local stand-in for Google Cloud: every
// API iapguard and its tests call, served on one host:port so the official
// Google Go clients work against it unchanged, given only an endpoint and no
// credentials. `iapctl emulator` runs it as a process; tests embed it with
// New and Start. User guide: docs/emulator.md.
//
// # One address, two protocols
//
// A single plain-text listener serves HTTP/1.1 and unencrypted HTTP/2
// (prior knowledge). Requests that arrive over HTTP/2 with Content-Type
// application/grpc go to the gRPC server; everything else to the REST mux:
//
//	gRPC  google.cloud.run.v2.Services, google.longrunning.Operations  (package cloudrun)
//	gRPC  google.pubsub.v1 Publisher, Subscriber, SchemaService         (cloud.google.com/go/pubsub/v2/pstest)
//	gRPC  google.logging.v2.LoggingServiceV2 (ListLogEntries)            (package logging)
//	gRPC  google.cloud.resourcemanager.v3.Projects (Get, SearchProjects) (package resourcemanager)
//	gRPC  google.cloud.asset.v1.AssetService (SearchAllResources)         (package cloudasset)
//	gRPC  google.cloud.secretmanager.v1.SecretManagerService             (package secretmanager)
//	REST  /compute/v1/, /compute/beta/  Compute Engine subset            (package compute)
//	REST  /v1beta1/                     Service Usage                    (package serviceusage)
//	REST  /v1/                          IAP IAM methods                  (package iapapi)
//	REST  /v1/SCOPE:searchAllResources  Cloud Asset search               (package cloudasset)
//	REST  /v1/projects/*/secrets/*/versions/*:access  Secret Manager     (package secretmanager)
//	REST  /v1/projects/*/topics/*:publish  Pub/Sub Publish              (pubsubrest.go; the rest of
//	                                    /v1/projects/*/{topics,subscriptions,snapshots,schemas} is 404)
//	REST  /v3/                          Resource Manager v3 reads        (package resourcemanager)
//	REST  /_emulator/v1/                control API (below)
//
// Once listening, Env returns the two lines `iapctl emulator` prints:
//
//	IAPGUARD_EMULATOR_HOST=127.0.0.1:PORT  (read by internal/gcp.NewClients)
//	PUBSUB_EMULATOR_HOST=127.0.0.1:PORT    (read by the gRPC Pub/Sub client itself, and by
//	                                        iapguard's function for its REST publisher)
//
// Official clients connect with these options (ADDR = host:port):
//
//	gRPC (run/apiv2, logging/logadmin, pubsub/v2, resourcemanager/apiv3):
//	    option.WithEndpoint(ADDR),
//	    option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
//	    option.WithoutAuthentication()
//	Compute (google.golang.org/api/compute/v1):
//	    option.WithEndpoint("http://ADDR/compute/v1/"), option.WithoutAuthentication()
//	Service Usage v1beta1, IAP v1, Cloud Asset v1, Secret Manager v1,
//	Resource Manager v3, Pub/Sub v1 Publish (google.golang.org/api/...):
//	    option.WithEndpoint("http://ADDR/"), option.WithoutAuthentication()
//
// The REST forms of gRPC methods are transcoded by emulator/internal/rest:
// the same implementation, counted, faulted and audited under the gRPC
// method's key.
//
// # Built apart from the product
//
// No emulator package links an iapguard product package: the emulator
// renders what Google sends itself (package delivery the audit-log
// CloudEvents, package logsink the messagePublished ones) and reads only
// the trigger definitions (package eventarc), as Eventarc reads the
// deployed triggers. Test support lives beside it (package emulatortest);
// tests build the product's clients against Env.Addr themselves. In the
// other direction only iapctl's sandbox and emulator commands and the
// local stack they run (internal/cli, internal/stack, internal/demo, and
// cmd/iapctl, cmd/iapbench) link the emulator; the deployed function and
// the libraries do not. Test files may cross-check the two.
// TestEmulatorAndProductImportRule holds the rule.
//
// The caller recorded in audit entries is Options.Principal unless a request
// names one in the X-Emulator-Principal header or the x-emulator-principal
// gRPC metadata key.
//
// Every call of every API goes through core.Core.Begin under a method key
// ("google.cloud.run.v2.Services.GetService",
// "google.longrunning.Operations.GetOperation",
// "compute.backendServices.patch",
// "serviceusage.services.generateServiceIdentity", "iap.getIamPolicy",
// "google.pubsub.v1.Publisher.Publish"): it is counted, and injected latency,
// errors and quotas apply. Calls to gRPC services the emulator does not
// register, and to the control API, are neither counted nor faulted.
//
// # Control API
//
// Served under ControlPrefix on the same address; answers JSON, errors in
// Google's envelope:
//
//	GET    /_emulator/v1/health    {"status":"ok"}
//	GET    /_emulator/v1/stats     core.Snapshot: {"calls":{KEY:N},"faults":{KEY:N}}
//	DELETE /_emulator/v1/stats     zero the counters (204)
//	POST   /_emulator/v1/faults    install a FaultConfig (204; 400 INVALID_ARGUMENT)
//	GET    /_emulator/v1/auditlog  {"entries":[LogEntry...]}, oldest first
//
// FaultConfig members are applied in this order: reset (remove every rule
// and quota first), seed (for error-rate draws; 0 leaves it), latency
// [{method, duration}] (Go duration; the last matching rule wins), errors
// [{method, rate, code}] (rate 0..1), failNext [{method, count, code}],
// races [{method, count}] (the next count precondition-checked writes lose
// an etag/fingerprint race) and quotas [{api, class, perMinute}] (api run,
// compute, serviceusage, iap, pubsub, logging or cloudresourcemanager;
// class read or write; 0 removes), then computeQuotaStatus (403 or 429:
// the status of an exhausted Compute quota; 0 leaves it). method is a
// path.Match glob over method keys; code a gRPC code name such as
// UNAVAILABLE (OK is rejected). Rules accumulate across POSTs. A rejected
// body installs nothing.
//
// # Differences from Google
//
// Everything known, by API; each package's doc has the details.
//
// All APIs:
//   - Plain text only, no TLS; credentials are neither required nor
//     checked and no IAM permission is enforced anywhere: every caller may
//     do everything. The caller is whoever the principal header/metadata
//     names.
//   - One address for all APIs; the REST mux routes by path prefix, so
//     Service Usage owns /v1beta1/ and IAP owns /v1/. Unknown REST paths
//     answer 404 in Google's envelope, unknown gRPC methods UNIMPLEMENTED.
//   - State lives in memory and ends with the process.
//   - Unknown projects: NOT_FOUND from Cloud Run, Compute (404) and IAP
//     (404); PERMISSION_DENIED from Service Usage (403) and Logging. Google
//     mostly answers PERMISSION_DENIED.
//   - Quotas are token buckets refilled continuously (Google: per minute).
//     An exhausted one fails with 403 rateLimitExceeded on Compute (as
//     Google documents; 429 with Faults.SetComputeQuotaStatus) and with
//     RESOURCE_EXHAUSTED (REST: 429, reason rateLimitExceeded) on the other
//     APIs. Injected errors carry fixed messages.
//   - Audit log: Admin Activity entries only (no Data Access entries for
//     reads, no System Event entries); callerIp is always 127.0.0.1 and the
//     user agent is the client's own (no ",gzip(gfe)"); rejected calls write
//     no entry; only the newest 100,000 entries are kept.
//
// Cloud Run Admin API v2:
//   - Services only: no Revisions, Jobs, Executions or Tasks services.
//     Revisions exist only as names, are never garbage-collected, and
//     traffic targets naming one are not checked.
//   - ListServices refuses location "-" with INVALID_ARGUMENT, as the v2
//     parent comment documents ("cannot be the "-" wildcard"; the exact
//     status is inferred); show_deleted is ignored (no tombstones); page
//     size 100 by default, at most 1000. Run v1 projects.locations.list
//     (REST, GET /v1/projects/P/locations) lists the regions: a fixed set
//     (cloudrun.DefaultRegions or Options.Regions) plus every region
//     holding one of the project's services.
//
// Cloud Asset Inventory v1 (package cloudasset): SearchAllResources for
// run.googleapis.com/Service only, the query forms iapguard sends, an
// index lag, and Google's documented quotas; see that package.
//   - UpdateService without update_mask (or "*") replaces the whole writable
//     spec; masks may name map entries and nested fields; output-only paths
//     are ignored; request fields outside the mask are not validated.
//   - generation grows on every accepted update, even a no-op; a new
//     revision only when template changes or force_new_revision is set.
//   - Rollouts always succeed, conditions are a fixed Ready set; Delete
//     removes the service at once (only the operation lags).
//   - Operations: complete on the first poll by default (or at once, or
//     after a delay); validate_only operations cannot be polled;
//     CancelOperation is UNIMPLEMENTED; ListOperations filters only on done;
//     at most 10,000 operations kept.
//   - Defaults and URLs follow recorded traffic; uri hashes and region codes
//     are made up; a missing service_id gets a generated one.
//   - Validation covers names, ids, images, labels, annotations, reserved
//     prefixes, enums and traffic; other fields are stored unchecked.
//   - IAM: normalised policies, never-set etag "ACAB"; TestIamPermissions
//     grants every run.* permission; audit_configs rejected.
//   - Audit entries carry the v2 request/response (Google writes a v1-shaped
//     response) and no operation member.
//
// Compute Engine v1 (subset for an external HTTPS load balancer):
//   - Served: global and regional backend services (plus aggregatedList),
//     SERVERLESS regional NEGs, URL maps, target HTTP(S) proxies, SSL
//     certificates, global forwarding rules, global and regional operations
//     get/wait. Everything else, including the set* methods (setUrlMap,
//     setSecurityPolicy, ...), health checks, instance groups, networks and
//     regional URL maps/proxies/forwarding rules, is not modelled; a
//     reference to an unmodelled collection answers 404.
//   - Operations never fail, complete on the first get/wait or after 5 ms,
//     wait returns at once; no operations list/delete; requestId dedupes for
//     the emulator's lifetime.
//   - The audit entry lists only the permission on the resource itself
//     (Google also lists .use on referenced resources).
//   - iap with enableCDN → 400 with an approximated message; OAuth secrets
//     are only kept as a SHA-256; backend-service defaults partly inferred;
//     NEG insert does not check the Cloud Run service exists.
//   - Managed certificates stay PROVISIONING; forwarding rules get a random
//     34.x.y.z address.
//   - fields, returnPartialSuccess and includeAllScopes are ignored;
//     /compute/beta/ serves v1 types (beta-only members → 400) with v1 self
//     links; wording of uncommon 400s is approximated.
//
// Service Usage v1beta1:
//   - Only generateServiceIdentity and operations.get; only projects/*
//     parents (folders/organizations → 400).
//   - Service agent emails are known for iap, run, pubsub and eventarc;
//     other services get an identity without email.
//   - Operations are done at once by default, named
//     operations/acf.p2-NUMBER-RANDOM, kept forever, without metadata.
//   - The audit entry's shape is inferred (no real sample), written once
//     per project and service.
//
// IAP v1 (getIamPolicy, setIamPolicy, testIamPermissions):
//   - Only the iap_web resources of projects, compute (global and regional)
//     and Cloud Run services; App Engine and unknown resources → 404.
//   - Policies are normalised; getIamPolicy ignores requestedPolicyVersion;
//     testIamPermissions grants every iap.* permission.
//   - The setIamPolicy audit entry's resource type and fields are inferred
//     and carry no policy delta.
//
// Cloud Logging v2:
//   - Only ListLogEntries over the emulator's audit log; other methods
//     UNIMPLEMENTED. Only projects as resource names; a subset of the query
//     language (anything else is INVALID_ARGUMENT, never ignored); order by
//     timestamp only.
//   - authorizationInfo[].permissionType is lost in conversion (the Go
//     AuditLog proto lacks it).
//
// Resource Manager v3 Projects (GetProject, SearchProjects):
//   - Every project is ACTIVE and visible to every caller; no parent,
//     labels or timestamps; the display name is the project id.
//   - SearchProjects takes an empty query or one FIELD:VALUE term (id,
//     projectId, state, lifecycleState, name, displayName; '*' only at the
//     end of a value); anything else is INVALID_ARGUMENT. Sorted by id;
//     page size 500 by default and at most.
//   - GetProject of an unknown project: PERMISSION_DENIED, as Google.
//   - Other methods (ListProjects, Create, Update, Move, IAM) UNIMPLEMENTED.
//
// Pub/Sub v1 (Google's in-memory fake pstest, registered on this address):
//   - pstest's simplifications (timing, delivery order); topic and
//     subscription IAM (google.iam.v1.IAMPolicy) is not served; Pub/Sub
//     writes no audit entries.
//
// Eventarc (the stand-in in package delivery, enabled by DeliverTo):
//   - Backoff 100 ms–5 s (Eventarc 10 s–600 s), 30 s attempt timeout,
//     24 h retention; no OIDC token and no traceparent; Go's User-Agent.
//   - An entry matching several triggers is delivered once per trigger;
//     trigger locations are ignored unless Options.Delivery.Region is set.
//   - Entries recorded before Start are not delivered; deliveries still
//     queued at Close are dropped. Delivery counters are not exposed by the
//     control API.
package emulator
