// Package compute emulates the subset of the Compute Engine v1 REST API that
// an external HTTPS load balancer in front of Cloud Run needs, for the
// official client google.golang.org/api/compute/v1 used unchanged:
//
//	cs, _ := compute.NewService(ctx,
//		option.WithEndpoint("http://ADDR/compute/v1/"), option.WithoutAuthentication())
//
// Server is mounted at "/compute/v1/" and "/compute/beta/" and reads the full
// request path. Responses are exactly what the compute/v1 Go types marshal
// (stored as those types; ForceSendFields reproduce the zero values Google
// prints). Every request goes through core.WithHTTPCaller and c.Begin with
// key "compute.<collection>.<method>" (collections as in discovery:
// backendServices, regionBackendServices, regionNetworkEndpointGroups,
// urlMaps, regionUrlMaps, targetHttpsProxies, regionTargetHttpsProxies,
// targetHttpProxies, regionTargetHttpProxies, targetTcpProxies,
// regionTargetTcpProxies, sslCertificates, regionSslCertificates,
// globalForwardingRules, forwardingRules, networks, subnetworks,
// healthChecks, regionHealthChecks, httpHealthChecks, httpsHealthChecks,
// instanceGroups, globalOperations, regionOperations, zoneOperations).
//
// # Served
//
//	projects/P/global/backendServices[/B]           get list insert patch update delete addSignedUrlKey deleteSignedUrlKey
//	projects/P/regions/R/backendServices[/B]        get list insert patch update delete
//	projects/P/aggregated/backendServices           aggregatedList
//	projects/P/regions/R/networkEndpointGroups[/N]  get list insert delete (SERVERLESS only)
//	projects/P/global/urlMaps[/M]                   get list insert patch update delete
//	projects/P/regions/R/urlMaps[/M]                get list insert patch update delete
//	projects/P/global/targetHttpsProxies[/T]        get list insert patch delete
//	projects/P/regions/R/targetHttpsProxies[/T]     get list insert patch delete
//	projects/P/global/targetHttpProxies[/T]         get list insert patch delete
//	projects/P/regions/R/targetHttpProxies[/T]      get list insert delete
//	projects/P/global/targetTcpProxies[/T]          get list insert delete
//	projects/P/regions/R/targetTcpProxies[/T]       get list insert delete
//	projects/P/global/sslCertificates[/C]           get list insert delete
//	projects/P/regions/R/sslCertificates[/C]        get list insert delete (self-managed only)
//	projects/P/global/forwardingRules[/F]           get list insert patch delete setLabels setTarget
//	projects/P/regions/R/forwardingRules[/F]        get list insert patch delete setLabels setTarget (to target proxies or backend services)
//	projects/P/global/networks[/N]                  get list insert patch delete
//	projects/P/regions/R/subnetworks[/S]            get list insert delete
//	projects/P/global/healthChecks[/H]              get list insert patch update delete
//	projects/P/regions/R/healthChecks[/H]           get list insert patch update delete
//	projects/P/global/httpHealthChecks[/H]          get list insert patch update delete
//	projects/P/global/httpsHealthChecks[/H]         get list insert patch update delete
//	projects/P/global/operations/O[/wait]           get wait
//	projects/P/regions/R/operations/O[/wait]        get wait
//	projects/P/zones/Z/instanceGroups[/G]           get list insert delete (unmanaged; no membership)
//	projects/P/zones/Z/operations/O[/wait]          get wait
//
// Networks, subnetworks, health checks, target TCP proxies, regional
// target HTTP proxies and instance groups are modelled only as far as the load balancer's
// resources need them (plain.go): stored as sent, with their required
// members, their references checked, and the defaults recorded traffic
// shows. Every project starts with the auto-mode network "default", as a
// new Google project does (its per-region subnetworks are not modelled).
//
// P is a project ID or number (self links always use the ID); resource path
// parameters accept a name or the numeric id. Anything else answers 404.
//
// # Semantics
//
//   - Mutations validate, apply atomically at request time and return an
//     Operation with status RUNNING (progress 0); a delete takes effect when
//     its operation completes (until then the resource is readable, holds
//     its references, and other mutations of it are 400 resourceNotReady),
//     as on Google. The operation completes
//     (DONE, progress 100, endTime) on its first get/wait, or by itself after
//     SetOperationDelay (DefaultOperationDelay, 5 ms; negative: only get/wait
//     complete it). Completion writes the "last" audit entry, so it is
//     written even if nobody polls. Operation types are insert/patch/update/
//     delete, except regional NEGs: "compute.regionNetworkEndpointGroups.insert"
//     (observed) and ".delete" (inferred by analogy).
//   - Fingerprints (backend services, URL maps, target proxies; forwarding
//     rules carry one, not checked on their limited patch): a new random 8-byte base64
//     value on every accepted mutation. PATCH is an RFC 7396 merge patch of
//     the raw body; its fingerprint is optional but checked when present.
//     PUT requires it (400 required "Required field 'resource.fingerprint'
//     not specified"). Stale → 412 conditionNotMet "Invalid fingerprint.".
//     c.Faults.TakeRace(method key) bumps the stored fingerprint before the
//     check, as a concurrent writer would.
//   - References are canonicalised on write to
//     https://www.googleapis.com/compute/v1/projects/ID/... and compared on
//     their "projects/..." suffix (any API version or host). They must name
//     existing resources of the right collection: backends[].group a full URL
//     of a NEG (partial → 400 invalid); URL map services (defaultService,
//     path rules, route rules, weighted backend services, request mirror
//     policies) backend services of the map's scope; a target HTTPS proxy
//     an existing URL map and 1..15 existing SSL certificates (or a
//     certificateMap, not checked); a backend service's health checks
//     existing health checks; a forwarding rule's target an existing target
//     HTTP(S) or TCP proxy of its scope. A regional forwarding rule
//     (EXTERNAL_MANAGED or INTERNAL_MANAGED) requires its network, which
//     must hold an active proxy-only subnet (REGIONAL_MANAGED_PROXY) in the
//     region; a subnetwork, when given, must be in the region and network.
//     A malformed reference or a wrong collection → 400 invalid; a missing
//     resource or project → 404 notFound naming it.
//   - usedBy on backend services is derived on read from the resources that
//     reference them. Deleting anything still referenced → 400
//     resourceInUseByAnotherResource "The backend_service resource '...' is
//     already being used by '...'".
//   - requestId makes a mutation idempotent: a retry returns the original
//     operation (kept for the emulator's lifetime, not 60 minutes).
//   - Lists: filter, only FIELD = VALUE and FIELD != VALUE terms joined by
//     AND (filter.go; other forms → 400 "not supported by the emulator"),
//     orderBy "name" (default) or
//     "creationTimestamp desc", maxResults ≤ 500, opaque pageToken.
//     aggregatedList spans "global" and every known region (SetRegions,
//     default DefaultRegions); scopes without items on the page carry
//     warning NO_RESULTS_ON_PAGE.
//   - Errors use Google's envelope; Compute's own 4xx omit "status", JSON
//     payload errors (unknown member, wrong type, not an object) keep
//     INVALID_ARGUMENT like the Google front end. Client mistakes never
//     produce 500.
//   - Audit: each accepted mutation writes a "first" entry at request time
//     (request body with @type type.googleapis.com/compute.<collection>.<method>,
//     the RUNNING operation as response, authorizationInfo, resource
//     location) and a slim "last" entry at completion, sharing operation id,
//     producer compute.googleapis.com and a fresh
//     compute.googleapis.com/root_trigger_id. methodName is
//     "v1.compute.<collection>.<method>" ("beta." under /compute/beta/).
//     Field sets match internal/auditsamples/testdata/compute-lb-target-https-proxy-insert-*.json.
//
// # Known deviations from Google
//
//   - Not modelled: instance groups, zones (and zonal operations), global
//     and zonal NEGs, non-SERVERLESS regional NEGs (400), backend buckets,
//     security policies, certificate maps and Certificate Manager
//     certificates, target SSL/gRPC proxies, addresses, forwarding rules to
//     a backend service (passthrough load balancers), and the set* methods
//     other than forwarding rules' setLabels and setTarget (setUrlMap,
//     setSslCertificates, setSecurityPolicy, setIamPolicy, …). A reference
//     to an unmodelled collection answers 404 as if the resource were
//     missing. Of networks, subnetworks and health checks only what
//     plain.go lists is modelled (no IP ranges, probing or routing; the
//     default network has no per-region subnetworks).
//   - IAM is not enforced: the audit entry names the permission Compute
//     would check (create / update for patch and update / delete /
//     setLabels / setTarget) but lists only that one; Google also lists the
//     .use permissions on referenced resources.
//   - Operations fail only when a core.Faults.FailOperations rule asks for
//     it, report resourceNotReady only for a resource being deleted (Google
//     also for one another operation is changing), and wait returns at once
//     (Google's waits up to 2 minutes). There is no operations list/delete.
//   - Unknown project → 404 notFound (Google answers 403 when the project
//     exists but is not visible). Rate-limit and injected faults are rendered
//     by core (429 RESOURCE_EXHAUSTED with status); Compute documents 403
//     rateLimitExceeded for its quotas.
//   - iap.enabled with enableCDN → 400 invalid "IAP is incompatible with
//     Cloud CDN": the incompatibility is documented, the real error is not
//     recorded. IAP without an OAuth client is accepted (Google-managed
//     client). oauth2ClientSecret is never stored or returned: its SHA-256
//     (hex) appears as oauth2ClientSecretSha256 (a secret sent empty
//     hashes too, as recorded) and survives updates that keep the client
//     id; audit requests drop the secret (and SSL private keys).
//   - Backend service defaults: loadBalancingScheme EXTERNAL (regional:
//     INTERNAL, inferred), sessionAffinity NONE, timeoutSec 30,
//     connectionDraining.drainingTimeoutSec 0, protocol HTTP for
//     INTERNAL_SELF_MANAGED, and for HTTP/HTTPS ones port 80 and portName
//     "http" (recorded); enableCDN false is
//     omitted (recorded); no backend balancingMode/capacityScaler
//     defaults. Serverless NEG backends with
//     health checks → 400; scheme compatibility across the load balancer
//     chain is not checked.
//   - NEG insert does not check that the Cloud Run service exists (unknown
//     on Google's side too); network/subnetwork/defaultPort on SERVERLESS →
//     400 as documented.
//   - Managed SSL certificates stay PROVISIONING forever; self-managed ones
//     are parsed (crypto/tls) for expireTime and subjectAlternativeNames.
//   - Forwarding rules get a random 34.x.y.z address, portRange "N" becomes
//     "N-N", and a missing portRange defaults to 80-80 / 443-443 by target
//     (inferred); a rule to a target TCP proxy must give one. Insert
//     ignores labels (recorded; "can only be added or modified by the
//     setLabels method"); setLabels checks the labelFingerprint (stale →
//     412 conditionNotMet) and answers an operation already DONE
//     (recorded). The messages
//     for a regional rule without network or proxy-only subnet are the
//     emulator's (Google's refusals are not recorded).
//   - Responses are never trimmed by the fields parameter;
//     returnPartialSuccess/includeAllScopes have no effect; aggregatedList is
//     served for backend services only.
//   - Resources are stored as v1 types: under /compute/beta/ a beta-only
//     member is an unknown member (400), and self links stay v1.
//   - Timestamps use the America/Los_Angeles offset like Compute's
//     ("2024-10-18T07:34:16.035-07:00"); creationTimestamp is the insert time.
//   - Error messages follow recorded ones where known (notFound,
//     alreadyExists, conditionNotMet, required fingerprint, in-use); the
//     wording of other 400s is approximated but always names the field.
package compute
