package bench

// Method keys, as the emulator counts them.
const (
	mGetService      = "google.cloud.run.v2.Services.GetService"
	mGetIAMPolicy    = "google.cloud.run.v2.Services.GetIamPolicy"
	mSetIAMPolicy    = "google.cloud.run.v2.Services.SetIamPolicy"
	mUpdateService   = "google.cloud.run.v2.Services.UpdateService"
	mGetOperation    = "google.longrunning.Operations.GetOperation"
	mListNEGs        = "compute.regionNetworkEndpointGroups.list"
	mListBackends    = "compute.backendServices.aggregatedList"
	mListHTTPSProxy  = "compute.targetHttpsProxies.list"
	mListFwdRules    = "compute.globalForwardingRules.list"
	mPatchBackend    = "compute.backendServices.patch"
	mWaitGlobalOp    = "compute.globalOperations.wait"
	mGenerateAgentID = "serviceusage.services.generateServiceIdentity"
	mGetIAPPolicy    = "iap.getIamPolicy"
)

// The minimums below are derived from what the design (DESIGN.md,
// "Compliance") obliges a reconcile to read and write, not from what the
// code does. Reads never depend on each other (the event names the
// service; NEGs and backend services are listed per region and project), so
// they take one concurrent round. Writes are ordered only where safety
// demands it: the IAP service agent must hold roles/run.invoker before IAP
// is switched on (otherwise IAP cannot reach the service), so the IAM policy
// write precedes the IAP switch. A write is done when its long-running
// operation is done: one poll (the emulator answers the first poll done,
// as Google usually does for these small changes).

// readRound is what every reconcile of a labelled service must read: the
// service, its IAM policy, the serverless NEGs of its region (is a load
// balancer in front?) and the project's backend services (one
// aggregatedList covers global and regional ones).
func readRound() Calls {
	return Calls{mGetService: 1, mGetIAMPolicy: 1, mListNEGs: 1, mListBackends: 1}
}

// MinWarmCompliant: a compliant service, on an instance that already knows
// the project's IAP service agent: the read round and nothing else.
//
//	round 1: GetService ∥ GetIamPolicy ∥ NEG list ∥ backend aggregatedList
func MinWarmCompliant() Minimum { return Minimum{Rounds: 1, Calls: readRound()} }

// MinColdCompliant: as warm, but a new instance must also learn (and
// ensure) the IAP service agent: generateServiceIdentity, which depends on
// nothing and joins the read round.
//
//	round 1: the four reads ∥ generateServiceIdentity
func MinColdCompliant() Minimum {
	c := readRound()
	c[mGenerateAgentID] = 1
	return Minimum{Rounds: 1, Calls: c}
}

// MinLBNonCompliant: a public, ingress-all service behind an external
// HTTPS load balancer whose backend service has IAP off. Three writes: the
// IAM policy (add the agent's invoker binding, drop allUsers), the service
// (ingress → internal load balancer) and the backend service (iap.enabled).
// Before switching IAP on, the design requires checking for an HTTPS
// frontend (warning only): target HTTPS proxies and forwarding rules, two
// lists that depend on nothing but the backend's usedBy; and the
// who-can-pass read of the backend's IAP policy. Each write's operation is
// polled once.
//
//	round 1: the four reads
//	round 2: SetIamPolicy ∥ UpdateService ∥ HTTPS proxy list ∥ forwarding rule list ∥ IAP policy
//	round 3: backendServices.patch (after the policy) ∥ GetOperation
//	round 4: globalOperations.wait
//
// The ingress change may go with the policy write (it does not switch IAP
// on); the chain policy → patch → wait makes four rounds either way.
func MinLBNonCompliant() Minimum {
	c := readRound()
	for _, m := range []string{mListHTTPSProxy, mListFwdRules, mGetIAPPolicy, mSetIAMPolicy, mUpdateService, mPatchBackend, mGetOperation, mWaitGlobalOp} {
		c[m] = 1
	}
	return Minimum{Rounds: 4, Calls: c}
}

// MinDirect: a public service with no load balancer gets Cloud Run's
// built-in IAP. Two writes, strictly ordered (iapEnabled must not go on
// before the agent may invoke), one operation poll, and the who-can-pass
// read of the service's IAP policy.
//
//	round 1: the four reads
//	round 2: SetIamPolicy ∥ IAP policy
//	round 3: UpdateService (iapEnabled=true)
//	round 4: GetOperation
func MinDirect() Minimum {
	c := readRound()
	c[mSetIAMPolicy] = 1
	c[mUpdateService] = 1
	c[mGetOperation] = 1
	c[mGetIAPPolicy] = 1
	return Minimum{Rounds: 4, Calls: c}
}

// MinBurst: n public services without a load balancer, one event each, on
// one new instance: n direct reconciles plus, once for the instance,
// generateServiceIdentity and the project-wide IAP policy. 2n of the calls
// are Cloud Run writes (the quota).
func MinBurst(n int) Minimum {
	c := Calls{}
	for k, v := range MinDirect().Calls {
		c[k] = v * int64(n)
	}
	c[mGenerateAgentID] = 1
	c[mGetIAPPolicy]++
	return Minimum{Rounds: MinDirect().Rounds, Calls: c}
}

// RunWrites counts the Cloud Run writes (the quota the burst runs against)
// among calls.
func RunWrites(c Calls) int64 { return c[mSetIAMPolicy] + c[mUpdateService] }
