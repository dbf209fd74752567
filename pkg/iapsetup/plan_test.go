package iapsetup

import (
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iapguard/iapguard/pkg/iapsetup/access"
	"github.com/iapguard/iapguard/pkg/outcome"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

const (
	tProject = "p1"
	tRegion  = "us-central1"
	tAgent   = "service-123456@gcp-sa-iap.iam.gserviceaccount.com"
	tHost    = "https://www.googleapis.com/compute/v1/"
)

// ---- fixture builders ----------------------------------------------------

func tService(mods ...func(*Service)) *Service {
	s := &Service{
		Ref:     ServiceRef{Project: tProject, Region: tRegion, Name: "hello"},
		Labels:  map[string]string{LabelKey: labelEnabled, "team": "web"},
		Ingress: ingressAll,
		Etag:    `"svc-etag-1"`,
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func label(v string) func(*Service) {
	return func(s *Service) { s.Labels[LabelKey] = v }
}

func noLabel(s *Service) { delete(s.Labels, LabelKey) }

func managed(s *Service) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[managedAnnotation] = managedValue
}

func ingress(i string) func(*Service) { return func(s *Service) { s.Ingress = i } }

func iapOn(s *Service) { s.IAPEnabled = true }

func invokerIAMOff(s *Service) { s.InvokerIAMDisabled = true }

func tPolicy(bs ...Binding) *Policy {
	return &Policy{Version: 1, Bindings: bs, Etag: []byte("BwYpol1")}
}

func bind(role string, members ...string) Binding { return Binding{Role: role, Members: members} }

func condBind(role, title string, members ...string) Binding {
	return Binding{Role: role, Members: members, Condition: &Condition{Title: title, Expression: `request.time < timestamp("2030-01-01T00:00:00Z")`}}
}

var agentBinding = bind(roleInvoker, "serviceAccount:"+tAgent)

func tNEG(name, service string) NEG {
	return NEG{
		SelfLink: tHost + "projects/" + tProject + "/regions/" + tRegion + "/networkEndpointGroups/" + name,
		Name:     name, Project: tProject, Region: tRegion, Type: "SERVERLESS",
		CloudRun: &CloudRunTarget{Service: service},
	}
}

func maskNEG(name, mask string) NEG {
	n := tNEG(name, "")
	n.CloudRun = &CloudRunTarget{URLMask: mask}
	return n
}

func tBackend(name, region string, groups ...string) BackendService {
	b := BackendService{
		Ref:                 BackendRef{Project: tProject, Region: region, Name: name},
		ID:                  fmt.Sprint(1000000000000000000 + uint64(crc32.ChecksumIEEE([]byte(name)))),
		Fingerprint:         "fp-" + name,
		LoadBalancingScheme: "EXTERNAL_MANAGED",
		Protocol:            "HTTPS",
	}
	b.SelfLink = tHost + b.Ref.String()
	for _, g := range groups {
		b.Groups = append(b.Groups, tHost+"projects/"+tProject+"/regions/"+tRegion+"/networkEndpointGroups/"+g)
	}
	return b
}

func withIAP(b BackendService) BackendService { b.IAPEnabled = true; return b }

// ---- access fixtures -------------------------------------------------------

const (
	tNumber  = "123456" // from tAgent
	tRunIAP  = "projects/" + tNumber + "/iap_web/cloud_run-" + tRegion + "/services/hello"
	tProjIAP = "projects/" + tNumber + "/iap_web"
)

func tPolicies(t testing.TB) *access.Policies {
	t.Helper()
	a, err := access.New("test", map[string][]string{
		"web-users": {"group:web@example.com", "user:a@example.com"},
		"admins":    {"group:admins@example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func accessLabel(v string) func(*Service) {
	return func(s *Service) { s.Labels[access.LabelKey] = v }
}

// testRecordKey signs the access records of plan tests.
var testRecordKey = recordKey{name: "projects/123456789012/secrets/iapguard-record-key/versions/1", key: []byte("0123456789abcdef0123456789abcdef")}

// withRecord reads obs's access record as the reconciler does, with
// testRecordKey. A plain member list in the annotation is test shorthand
// for a record, signed with testRecordKey, of those members on each of the
// IAP resources the plan covers; the annotation is rewritten to it.
func withRecord(obs *observed) *observed {
	if obs.Service == nil {
		return obs
	}
	lookup := func(v string) (recordKey, error) {
		if v != testRecordKey.name {
			return recordKey{}, fmt.Errorf("secret version %s not found", v)
		}
		return testRecordKey, nil
	}
	raw := obs.Service.Annotations[accessAnnotation]
	if raw != "" && !strings.HasPrefix(raw, "{") {
		probe := *obs
		p := planFor(DesiredFor(obs.Service), &probe)
		entries := map[string][]string{}
		for _, part := range p.access.list() {
			entries[part.res.Name] = parseGranted(raw)
		}
		obs.Service = obs.Service.clone()
		obs.Service.Annotations[accessAnnotation] = formatRecord(obs.Service.Ref.String(), entries, nil, &testRecordKey)
		raw = obs.Service.Annotations[accessAnnotation]
	}
	k := testRecordKey
	obs.record = verifyRecord(obs.Service.Ref.String(), raw, lookup, &k, nil)
	return obs
}

func grantedAnn(v string) func(*Service) {
	return func(s *Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[accessAnnotation] = v
	}
}

// iapPolicy is an IAP resource policy granting the accessor role to members
// (an empty one reads as IAM's empty policy).
func iapPolicy(members ...string) *Policy {
	if len(members) == 0 {
		return &Policy{Etag: []byte("ACAB")}
	}
	return &Policy{Version: 1, Etag: []byte("BwIAP1"), Bindings: []Binding{bind(roleAccessor, members...)}}
}

func iapOf(kv ...any) map[string]*Policy {
	m := map[string]*Policy{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(*Policy)
	}
	return m
}

func backendIAP(b BackendService) string { return backendIAPResource(tNumber, b).Name }

func withCDN(b BackendService) BackendService { b.EnableCDN = true; return b }

// ---- golden rendering ----------------------------------------------------

// renderPlan renders everything a plan decides, including the writes it
// would make, in a stable text form.
func renderPlan(p *plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service: %s\n", p.Ref)
	fmt.Fprintf(&b, "intent: %s (label set=%v value=%q, managed=%v)\n", p.Desired.Intent, p.Desired.LabelSet, p.Desired.Label, p.Desired.Managed)
	fmt.Fprintf(&b, "outcome: %s\n", p.Outcome)
	if p.Mode != "" {
		fmt.Fprintf(&b, "mode: %s\n", p.Mode)
	}
	if p.Reason != "" {
		fmt.Fprintf(&b, "reason: %s\n", p.Reason)
	}
	if len(p.Steps) > 0 {
		b.WriteString("steps:\n")
		for _, s := range p.Steps {
			fmt.Fprintf(&b, "  - %s [%s] %s\n      %s\n", s.Name, s.Result, s.Resource, s.Message)
		}
	}
	if len(p.Changes) > 0 {
		b.WriteString("changes:\n")
		for _, c := range p.Changes {
			fmt.Fprintf(&b, "  - %s %s: %q -> %q\n", c.Resource, c.Field, c.Before, c.After)
		}
	}
	if len(p.Warnings) > 0 {
		b.WriteString("warnings:\n")
		for _, w := range p.Warnings {
			fmt.Fprintf(&b, "  - %s\n", w)
		}
	}
	fmt.Fprintf(&b, "writes: %d\n", p.writes())
	if p.policy != nil && p.policy.after != nil {
		a := p.policy.after
		fmt.Fprintf(&b, "  - SetIamPolicy %s etag=%s version=%d\n", p.Ref, a.Etag, a.Version)
		for _, bd := range a.Bindings {
			fmt.Fprintf(&b, "      %s: %s\n", bindingLabel(bd), strings.Join(bd.Members, ", "))
		}
	}
	if p.service != nil && p.service.update != nil {
		u := p.service.update
		fmt.Fprintf(&b, "  - UpdateService %s etag=%s mask=%v\n", u.Ref, u.Etag, u.Mask())
		if u.Ingress != "" {
			fmt.Fprintf(&b, "      ingress=%s\n", u.Ingress)
		}
		if u.RequireInvokerIAM {
			b.WriteString("      invokerIamDisabled=false\n")
		}
		if u.EnableIAP {
			b.WriteString("      iapEnabled=true\n")
		}
		if u.Annotations != nil {
			keys := make([]string, 0, len(u.Annotations))
			for k := range u.Annotations {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+u.Annotations[k])
			}
			fmt.Fprintf(&b, "      annotations={%s}\n", strings.Join(kv, ", "))
		}
	}
	for _, bp := range p.backends {
		if bp.write {
			fmt.Fprintf(&b, "  - EnableIAP %s fingerprint=%s\n", bp.backend.Ref, bp.backend.Fingerprint)
		}
	}
	if p.access != nil {
		for _, part := range p.access.list() {
			if a := part.after; a != nil {
				fmt.Fprintf(&b, "  - SetIAPPolicy %s etag=%s version=%d\n", part.res.Name, a.Etag, a.Version)
				for _, bd := range a.Bindings {
					fmt.Fprintf(&b, "      %s: %s\n", bindingLabel(bd), strings.Join(bd.Members, ", "))
				}
			}
		}
		if fs := p.access.findings(); len(fs) > 0 {
			b.WriteString("access:\n")
			for _, f := range fs {
				fmt.Fprintf(&b, "  - %s (%s) policy=%q\n      members=%v conditional=%v\n      project %s=%v\n      granted=%v\n",
					f.Resource, f.What, f.Policy, f.Members, f.Conditional, f.Project, f.ProjectMembers, f.Granted)
			}
		}
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "plan", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("plan %s differs from %s (-want +got):\n%s", name, path, diff)
	}
}

// ---- the table ------------------------------------------------------------

func TestPlanGolden(t *testing.T) {
	t.Parallel()
	https := Frontend{HTTPS: true, URLMaps: []string{"projects/p1/global/urlMaps/web"}, ForwardingRules: []string{"projects/p1/global/forwardingRules/web-https"}}
	tests := []struct {
		name   string
		obs    func() *observed
		dryRun bool
		// want are assertions that do not depend on the golden file, so a
		// careless -update cannot bless a wrong plan.
		want     outcome.Kind
		mode     outcome.Mode
		writes   int
		statusOf map[string]outcome.StepResult
	}{
		{
			name: "label-absent-skipped",
			obs: func() *observed {
				return &observed{Service: tService(noLabel), Policy: tPolicy(bind(roleInvoker, allUsers))}
			},
			want: outcome.Skipped,
		},
		{
			name: "label-disabled-skipped",
			obs:  func() *observed { return &observed{Service: tService(label(labelDisabled))} },
			want: outcome.Skipped,
		},
		{
			name: "label-invalid-rejected",
			obs:  func() *observed { return &observed{Service: tService(label("yes"))} },
			want: outcome.Rejected,
		},
		{
			name: "label-wrong-case-rejected",
			obs:  func() *observed { return &observed{Service: tService(label("Enabled"))} },
			want: outcome.Rejected,
		},
		{
			name: "label-removed-after-enforcement-opted-out",
			obs: func() *observed {
				return &observed{Service: tService(noLabel, managed, iapOn), Policy: tPolicy(agentBinding), marker: &markerState{verified: true}}
			},
			want: outcome.OptedOut,
		},
		{
			name: "label-disabled-after-enforcement-opted-out",
			obs: func() *observed {
				return &observed{Service: tService(label(labelDisabled), managed, iapOn), marker: &markerState{verified: true}}
			},
			want: outcome.OptedOut,
		},
		{
			// A marker iapguard cannot verify (written by a service
			// editor, say) is no evidence that iapguard managed it.
			name: "label-removed-unverified-marker-skipped",
			obs: func() *observed {
				return &observed{Service: tService(noLabel, managed, iapOn), Policy: tPolicy(agentBinding),
					marker: &markerState{why: "its signature does not match (edited by hand, or copied from another service)"}}
			},
			want: outcome.Skipped,
		},
		{
			name: "service-missing-skipped",
			obs:  func() *observed { return &observed{} },
			want: outcome.Skipped,
		},
		{
			name: "direct-fresh-public-service",
			obs: func() *observed {
				return &observed{Service: tService(), Policy: tPolicy(bind(roleInvoker, allUsers)), Agent: tAgent}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
			statusOf: map[string]outcome.StepResult{outcome.StepInvokerBinding: outcome.StepChanged, outcome.StepIAMAuth: outcome.StepChanged, outcome.StepIngress: outcome.StepSkipped, outcome.StepDirectIAP: outcome.StepChanged},
		},
		{
			name: "direct-fresh-public-service-dry-run",
			obs: func() *observed {
				return &observed{Service: tService(), Policy: tPolicy(bind(roleInvoker, allUsers)), Agent: tAgent}
			},
			dryRun: true,
			want:   outcome.Remediated, mode: outcome.Direct, writes: 2,
		},
		{
			name: "direct-empty-policy",
			obs: func() *observed {
				return &observed{Service: tService(), Policy: &Policy{Etag: []byte("ACAB")}, Agent: tAgent}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
		},
		{
			name: "direct-compliant-managed",
			obs: func() *observed {
				return &observed{Service: tService(managed, iapOn), Policy: tPolicy(agentBinding), Agent: tAgent}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
		},
		{
			// Compliant, but without the managed marker (made compliant by
			// hand, or by an earlier reconcile whose service update failed
			// after its other writes succeeded): the marker alone is a
			// write, so that removing the label later is reported
			// opted-out. Every step is ok; the outcome is remediated
			// because something is written.
			name: "direct-compliant-by-hand-not-marked",
			obs: func() *observed {
				return &observed{Service: tService(iapOn), Policy: tPolicy(agentBinding), Agent: tAgent}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 1,
			statusOf: map[string]outcome.StepResult{outcome.StepInvokerBinding: outcome.StepOK, outcome.StepIAMAuth: outcome.StepOK, outcome.StepDirectIAP: outcome.StepOK},
		},
		{
			// A dry run plans the marker too (the update is sent with
			// validate_only and persists nothing).
			name: "direct-compliant-not-marked-dry-run",
			obs: func() *observed {
				return &observed{Service: tService(iapOn), Policy: tPolicy(agentBinding), Agent: tAgent}
			},
			dryRun: true,
			want:   outcome.Remediated, mode: outcome.Direct, writes: 1,
		},
		{
			name: "direct-invoker-iam-disabled",
			obs: func() *observed {
				return &observed{Service: tService(managed, iapOn, invokerIAMOff), Policy: tPolicy(agentBinding), Agent: tAgent}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 1,
			statusOf: map[string]outcome.StepResult{outcome.StepIAMAuth: outcome.StepChanged, outcome.StepDirectIAP: outcome.StepOK},
		},
		{
			name: "direct-only-iam-missing-unmarked-adds-marker",
			obs: func() *observed {
				return &observed{Service: tService(iapOn), Policy: tPolicy(), Agent: tAgent}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
		},
		{
			name: "direct-stricter-ingress-kept",
			obs: func() *observed {
				return &observed{Service: tService(ingress(ingressInternalOnly)), Policy: tPolicy(agentBinding), Agent: tAgent}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 1,
			statusOf: map[string]outcome.StepResult{outcome.StepIngress: outcome.StepSkipped},
		},
		{
			name: "lb-global-iap-off",
			obs: func() *observed {
				return &observed{
					Service: tService(), Policy: tPolicy(bind(roleInvoker, allUsers)), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{tBackend("web", "", "hello-neg")},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 3,
			statusOf: map[string]outcome.StepResult{outcome.StepIngress: outcome.StepChanged, outcome.StepBackendIAP: outcome.StepChanged},
		},
		{
			name: "lb-global-iap-off-https-frontend",
			obs: func() *observed {
				b := tBackend("web", "", "hello-neg")
				return &observed{
					Service: tService(), Policy: tPolicy(), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello")}, Backends: []BackendService{b},
					Frontends: map[string]Frontend{ResourcePath(b.SelfLink): https},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 3,
		},
		{
			name: "lb-global-iap-off-no-https-frontend",
			obs: func() *observed {
				b := tBackend("web", "", "hello-neg")
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer), managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello")}, Backends: []BackendService{b},
					Frontends: map[string]Frontend{ResourcePath(b.SelfLink): {URLMaps: []string{"projects/p1/global/urlMaps/web"}}},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 1,
			statusOf: map[string]outcome.StepResult{outcome.StepBackendIAP: outcome.StepChanged, outcome.StepIngress: outcome.StepOK},
		},
		{
			name: "lb-compliant",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer), managed), Policy: tPolicy(agentBinding, bind("roles/run.developer", "user:dev@example.com")), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withIAP(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Compliant, mode: outcome.LoadBalancer, writes: 0,
		},
		{
			name: "lb-compliant-not-marked",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer)), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withIAP(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 1,
			statusOf: map[string]outcome.StepResult{outcome.StepInvokerBinding: outcome.StepOK, outcome.StepIAMAuth: outcome.StepOK, outcome.StepIngress: outcome.StepOK, outcome.StepBackendIAP: outcome.StepOK},
		},
		{
			name: "lb-cdn-conflict",
			obs: func() *observed {
				return &observed{
					Service: tService(), Policy: tPolicy(bind(roleInvoker, allUsers)), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withCDN(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Conflict, mode: outcome.LoadBalancer, writes: 2,
			statusOf: map[string]outcome.StepResult{outcome.StepBackendIAP: outcome.StepConflict, outcome.StepIngress: outcome.StepChanged},
		},
		{
			name: "lb-cdn-on-one-of-two-backends",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer), managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withCDN(tBackend("cdn", "", "hello-neg")), tBackend("web", "", "hello-neg")},
				}
			},
			want: outcome.Conflict, mode: outcome.LoadBalancer, writes: 1,
		},
		{
			name: "lb-iap-and-cdn-both-on",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer), managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withCDN(withIAP(tBackend("web", "", "hello-neg")))},
				}
			},
			want: outcome.Compliant, mode: outcome.LoadBalancer, writes: 0,
		},
		{
			name: "lb-stricter-ingress-internal-only-kept",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressInternalOnly), managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withIAP(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Compliant, mode: outcome.LoadBalancer, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepIngress: outcome.StepWarning},
		},
		{
			name: "lb-stricter-ingress-none-kept",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressNone)), Policy: tPolicy(), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{tBackend("web", "", "hello-neg")},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 3,
			statusOf: map[string]outcome.StepResult{outcome.StepIngress: outcome.StepWarning},
		},
		{
			name: "lb-ingress-unspecified-left-alone",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressUnspecified), managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withIAP(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Compliant, mode: outcome.LoadBalancer, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepIngress: outcome.StepWarning},
		},
		{
			name: "lb-regional-and-global-backends",
			obs: func() *observed {
				return &observed{
					Service: tService(), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello"), tNEG("other-neg", "other")},
					Backends: []BackendService{
						tBackend("web", "", "hello-neg"),
						tBackend("internal", tRegion, "hello-neg"),
						tBackend("other", "", "other-neg"),
						tBackend("elsewhere", "europe-west1"),
					},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 3,
		},
		{
			name: "lb-reference-other-api-version",
			obs: func() *observed {
				b := tBackend("web", "")
				b.Groups = []string{"https://compute.googleapis.com/compute/beta/projects/p1/regions/us-central1/networkEndpointGroups/hello-neg"}
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer), managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello")}, Backends: []BackendService{b},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 1,
		},
		{
			name: "lb-neg-for-other-service-is-direct",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("other-neg", "other")},
					Backends: []BackendService{tBackend("web", "", "other-neg")},
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
		},
		{
			name: "neg-without-backend-is-direct",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello")},
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
		},
		{
			name: "url-mask-neg-warning",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{maskNEG("mask-neg", "example.com/<service>")},
					Backends: []BackendService{tBackend("web", "", "mask-neg")},
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
		},
		{
			name: "lb-and-direct-iap-both-on-warning",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, ingress(ingressInternalLoadBalancer)), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withIAP(tBackend("web", "", "hello-neg"))},
				}
			},
			// Built-in IAP on: direct mode; neither IAP is turned off.
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepBackendIAP: outcome.StepOK, outcome.StepDirectIAP: outcome.StepOK, outcome.StepIngress: outcome.StepSkipped},
		},
		// A service first reconciled in direct mode, later put behind a
		// load balancer: Cloud Run's built-in IAP guards that path too;
		// backend IAP is not enabled (Google does not support both).
		{
			name: "direct-then-lb-builtin-iap-kept",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{tBackend("web", "", "hello-neg"), tBackend("internal", tRegion, "hello-neg")},
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepBackendIAP: outcome.StepOK, outcome.StepDirectIAP: outcome.StepOK, outcome.StepIngress: outcome.StepSkipped},
		},
		{
			name: "direct-then-lb-unmarked-public",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn), Policy: tPolicy(bind(roleInvoker, allUsers)), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{tBackend("web", "", "hello-neg")},
				}
			},
			// IAM is fixed and the marker added; ingress and the backend are left alone.
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
			statusOf: map[string]outcome.StepResult{outcome.StepBackendIAP: outcome.StepOK, outcome.StepIngress: outcome.StepSkipped, outcome.StepIAMAuth: outcome.StepChanged},
		},
		{
			name: "direct-then-lb-cdn-conflict",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withCDN(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Conflict, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepBackendIAP: outcome.StepConflict, outcome.StepDirectIAP: outcome.StepOK},
		},
		// ---- access ----
		{
			name: "access-grant-direct",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy()),
				}
			},
			// One IAP policy write, one service update recording the grants.
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepChanged},
		},
		{
			name: "access-grant-dry-run",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy()),
				}
			},
			dryRun: true,
			want:   outcome.Remediated, mode: outcome.Direct, writes: 2,
		},
		{
			name: "access-fresh-service-grants-before-iap",
			obs: func() *observed {
				return &observed{
					Service: tService(accessLabel("admins")), Policy: tPolicy(bind(roleInvoker, allUsers)), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 3,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepChanged, outcome.StepDirectIAP: outcome.StepChanged},
		},
		{
			name: "access-compliant-recorded",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users"), grantedAnn("group:web@example.com,user:a@example.com")),
					Policy:  tPolicy(agentBinding), Agent: tAgent, AccessPolicies: tPolicies(t),
					IAP: iapOf(tRunIAP, iapPolicy("group:web@example.com", "user:a@example.com", "user:boss@example.com"), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepOK},
		},
		{
			name: "access-policy-change-adds-and-revokes-own-only",
			obs: func() *observed {
				// Label switched from web-users to admins: iapguard granted
				// web@ and a@; boss@ was granted by someone else.
				return &observed{
					Service: tService(iapOn, managed, accessLabel("admins"), grantedAnn("group:web@example.com,user:a@example.com")),
					Policy:  tPolicy(agentBinding), Agent: tAgent, AccessPolicies: tPolicies(t),
					IAP: iapOf(tRunIAP, iapPolicy("group:web@example.com", "user:a@example.com", "user:boss@example.com"), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepChanged},
		},
		{
			name: "access-foreign-member-in-policy-not-recorded",
			obs: func() *observed {
				// a@ already holds the role (someone else granted it): it is
				// not recorded, so iapguard will never revoke it.
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tRunIAP, iapPolicy("user:A@Example.com"), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
		},
		{
			name: "access-conditional-grant-left-alone",
			obs: func() *observed {
				p := &Policy{Version: 3, Etag: []byte("BwIAP3"), Bindings: []Binding{condBind(roleAccessor, "office-hours", "group:web@example.com")}}
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tRunIAP, p, tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 2,
		},
		{
			name: "access-unknown-policy-rejected",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-user"), grantedAnn("user:a@example.com")),
					Policy:  tPolicy(agentBinding), Agent: tAgent, AccessPolicies: tPolicies(t),
					IAP: iapOf(tRunIAP, iapPolicy("user:a@example.com"), tProjIAP, iapPolicy()),
				}
			},
			// Nothing granted, nothing revoked, IAP still enforced.
			want: outcome.Rejected, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepRejected, outcome.StepDirectIAP: outcome.StepOK},
		},
		{
			name: "access-no-policies-configured-rejected",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent,
					IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Rejected, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepRejected},
		},
		{
			name: "access-nobody-can-pass-warning",
			obs: func() *observed {
				return &observed{
					CheckAccess: true, // IAP already on: checked as an audit asks
					Service:     tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepWarning},
		},
		{
			name: "access-project-wide-grant-counts",
			obs: func() *observed {
				return &observed{
					CheckAccess: true, // IAP already on: checked as an audit asks
					Service:     tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					IAP: iapOf(tRunIAP, iapPolicy(), tProjIAP, iapPolicy("domain:example.com")),
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepOK},
		},
		{
			name: "access-project-wide-unreadable",
			obs: func() *observed {
				return &observed{
					CheckAccess: true, // IAP already on: checked as an audit asks
					Service:     tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					IAP:     iapOf(tRunIAP, iapPolicy("group:web@example.com")),
					IAPErrs: map[string]error{tProjIAP: errors.New("permission denied")},
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepOK},
		},
		{
			name: "access-read-failed",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, accessLabel("web-users")), Policy: tPolicy(agentBinding), Agent: tAgent,
					AccessPolicies: tPolicies(t), IAP: iapOf(tProjIAP, iapPolicy()),
					IAPErrs: map[string]error{tRunIAP: errors.New("unavailable")},
				}
			},
			want: outcome.Failed, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepFailed},
		},
		{
			name: "access-public-accessor-warning",
			obs: func() *observed {
				return &observed{
					CheckAccess: true, // IAP already on: checked as an audit asks
					Service:     tService(iapOn, managed), Policy: tPolicy(agentBinding), Agent: tAgent,
					IAP: iapOf(tRunIAP, iapPolicy(allAuthenticatedUsers), tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepWarning},
		},
		{
			name: "access-label-removed-grants-kept",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed, grantedAnn("group:web@example.com,user:a@example.com")),
					Policy:  tPolicy(agentBinding), Agent: tAgent, AccessPolicies: tPolicies(t),
					IAP: iapOf(tRunIAP, iapPolicy("group:web@example.com", "user:a@example.com"), tProjIAP, iapPolicy()),
					// As an operator's audit asks: IAP is already on and no
					// policy is declared, so the function itself would not check.
					CheckAccess: true,
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepOK},
		},
		{
			name: "access-lb-two-backends",
			obs: func() *observed {
				web, internal := withIAP(tBackend("web", "", "hello-neg")), tBackend("internal", tRegion, "hello-neg")
				return &observed{
					Service: tService(managed, ingress(ingressInternalLoadBalancer), accessLabel("admins")), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello")}, Backends: []BackendService{web, internal},
					AccessPolicies: tPolicies(t),
					IAP:            iapOf(backendIAP(web), iapPolicy("group:admins@example.com"), backendIAP(internal), iapPolicy(), tProjIAP, iapPolicy()),
				}
			},
			// Grant on the backend that lacks it, enable IAP there, and
			// record the grant on that backend only: the member held the
			// role on the other backend already, where iapguard never
			// revokes it (the record is per IAP resource).
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 3,
		},
		{
			name: "access-lb-cdn-only-skipped",
			obs: func() *observed {
				return &observed{
					Service: tService(managed, ingress(ingressInternalLoadBalancer), accessLabel("admins")), Policy: tPolicy(agentBinding), Agent: tAgent,
					NEGs: []NEG{tNEG("hello-neg", "hello")}, Backends: []BackendService{withCDN(tBackend("web", "", "hello-neg"))},
					AccessPolicies: tPolicies(t), IAP: iapOf(tProjIAP, iapPolicy()),
				}
			},
			want: outcome.Conflict, mode: outcome.LoadBalancer, writes: 0,
			statusOf: map[string]outcome.StepResult{outcome.StepAccess: outcome.StepSkipped},
		},
		{
			name: "lb-iam-only-unmarked-adds-marker",
			obs: func() *observed {
				return &observed{
					Service: tService(ingress(ingressInternalLoadBalancer)), Policy: tPolicy(bind(roleInvoker, allAuthenticatedUsers)), Agent: tAgent,
					NEGs:     []NEG{tNEG("hello-neg", "hello")},
					Backends: []BackendService{withIAP(tBackend("web", "", "hello-neg"))},
				}
			},
			want: outcome.Remediated, mode: outcome.LoadBalancer, writes: 2,
		},
		{
			name: "foreign-bindings-preserved",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed),
					Policy: &Policy{Version: 3, Etag: []byte("BwYpol3"), Bindings: []Binding{
						bind("roles/run.admin", "user:owner@example.com", "group:ops@example.com"),
						bind(roleInvoker, "user:alice@example.com", allUsers, "serviceAccount:ci@p1.iam.gserviceaccount.com", allAuthenticatedUsers),
						condBind(roleInvoker, "temporary", allUsers),
						condBind(roleInvoker, "contractors", "group:contractors@example.com", allAuthenticatedUsers),
						bind("roles/run.viewer", allUsers),
						condBind("roles/run.developer", "office-hours", "user:dev@example.com"),
					}},
					Agent: tAgent,
				}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 1,
		},
		{
			name: "agent-only-in-conditional-binding",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed),
					Policy:  &Policy{Version: 3, Etag: []byte("BwYpol3"), Bindings: []Binding{condBind(roleInvoker, "temporary", "serviceAccount:"+tAgent)}},
					Agent:   tAgent,
				}
			},
			want: outcome.Remediated, mode: outcome.Direct, writes: 1,
		},
		{
			name: "agent-member-differs-in-case",
			obs: func() *observed {
				return &observed{
					Service: tService(iapOn, managed),
					Policy:  tPolicy(bind(roleInvoker, "serviceAccount:"+strings.ToUpper(tAgent[:10])+tAgent[10:])),
					Agent:   tAgent,
				}
			},
			want: outcome.Compliant, mode: outcome.Direct, writes: 0,
		},
		{
			name: "unknown-agent-fails",
			obs: func() *observed {
				return &observed{Service: tService(iapOn, managed), Policy: tPolicy()}
			},
			want: outcome.Failed, mode: outcome.Direct, writes: 0,
		},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		if seen[tc.name] {
			t.Fatalf("duplicate case %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obs := withRecord(tc.obs())
			before := renderObserved(obs)
			p := planFor(DesiredFor(obs.Service), obs)
			if tc.dryRun {
				p.DryRun = true
				p.describe()
			}
			if after := renderObserved(obs); after != before {
				t.Errorf("PlanFor modified its input:\nbefore %s\nafter  %s", before, after)
			}
			if p.Outcome != tc.want {
				t.Errorf("PlanFor(%s).Outcome = %s, want %s (reason %q)", tc.name, p.Outcome, tc.want, p.Reason)
			}
			if p.Mode != tc.mode {
				t.Errorf("PlanFor(%s).Mode = %q, want %q", tc.name, p.Mode, tc.mode)
			}
			if got := p.writes(); got != tc.writes {
				t.Errorf("PlanFor(%s).writes() = %d, want %d", tc.name, got, tc.writes)
			}
			for name, want := range tc.statusOf {
				i := slices.IndexFunc(p.Steps, func(s outcome.Step) bool { return s.Name == name })
				if i < 0 {
					t.Errorf("PlanFor(%s): no step %s", tc.name, name)
					continue
				}
				if got := p.Steps[i].Result; got != want {
					t.Errorf("PlanFor(%s): step %s = %s, want %s", tc.name, name, got, want)
				}
			}
			// Every planned write must pass the safety guard.
			if p.policy != nil && p.policy.after != nil {
				if err := checkPolicyWrite(p.policy.before, p.policy.after, obs.Agent); err != nil {
					t.Errorf("planned policy write fails the guard: %v", err)
				}
			}
			if p.service != nil && p.service.update != nil {
				if err := checkServiceUpdate(p.service.before, p.service.update); err != nil {
					t.Errorf("planned service update fails the guard: %v", err)
				}
			}
			for _, part := range p.access.list() {
				if part.after != nil {
					if err := checkAccessWrite(part.before, part.after, p.access.wanted, p.access.rec.granted[part.res.Name]); err != nil {
						t.Errorf("planned IAP policy write fails the guard: %v", err)
					}
				}
			}
			checkGolden(t, tc.name, renderPlan(p))
		})
	}
}

func renderObserved(o *observed) string {
	return fmt.Sprintf("%#v", *o) + fmt.Sprintf("%#v %#v", o.Service, o.Policy)
}

// TestPlanIdempotent applies each planned write to the observed state the
// way the APIs would and checks that planning again yields no writes: the
// events caused by iapguard's own writes must find the service compliant.
func TestPlanIdempotent(t *testing.T) {
	t.Parallel()
	starts := map[string]*observed{
		"direct-public": {Service: tService(invokerIAMOff), Policy: tPolicy(bind(roleInvoker, allUsers, "user:a@example.com")), Agent: tAgent},
		"lb": {
			Service: tService(), Policy: tPolicy(bind(roleInvoker, allAuthenticatedUsers), bind("roles/run.admin", "user:o@example.com")), Agent: tAgent,
			NEGs:     []NEG{tNEG("hello-neg", "hello")},
			Backends: []BackendService{tBackend("web", "", "hello-neg"), tBackend("internal", tRegion, "hello-neg")},
		},
		"lb-cdn": {
			Service: tService(), Policy: tPolicy(), Agent: tAgent,
			NEGs:     []NEG{tNEG("hello-neg", "hello")},
			Backends: []BackendService{withCDN(tBackend("web", "", "hello-neg"))},
		},
		"access-fresh": {
			Service: tService(accessLabel("web-users")), Policy: tPolicy(), Agent: tAgent, AccessPolicies: tPolicies(t),
			IAP: iapOf(tRunIAP, iapPolicy("user:boss@example.com"), tProjIAP, iapPolicy()),
		},
		"access-policy-change": {
			Service: tService(iapOn, managed, accessLabel("admins"), grantedAnn("group:web@example.com,user:a@example.com")),
			Policy:  tPolicy(agentBinding), Agent: tAgent, AccessPolicies: tPolicies(t),
			IAP: iapOf(tRunIAP, iapPolicy("group:web@example.com", "user:a@example.com", "user:boss@example.com"), tProjIAP, iapPolicy()),
		},
		"access-lb": {
			Service: tService(accessLabel("admins")), Policy: tPolicy(), Agent: tAgent, AccessPolicies: tPolicies(t),
			NEGs:     []NEG{tNEG("hello-neg", "hello")},
			Backends: []BackendService{tBackend("web", "", "hello-neg")},
			IAP:      iapOf(backendIAP(tBackend("web", "", "hello-neg")), iapPolicy(), tProjIAP, iapPolicy()),
		},
	}
	for name, obs := range starts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			obs = withRecord(obs)
			p := planFor(DesiredFor(obs.Service), obs)
			if p.writes() == 0 {
				t.Fatalf("start state %s needs no writes; the test needs one that does", name)
			}
			next := &observed{Service: obs.Service.clone(), Policy: obs.Policy.clone(), Agent: obs.Agent, NEGs: obs.NEGs, Backends: slices.Clone(obs.Backends),
				AccessPolicies: obs.AccessPolicies, IAP: maps.Clone(obs.IAP)}
			for _, part := range p.access.list() {
				if part.after != nil {
					next.IAP[part.res.Name] = part.after.clone()
					next.IAP[part.res.Name].Etag = []byte("new")
				}
			}
			if pp := p.policy; pp.after != nil {
				next.Policy = pp.after.clone()
				next.Policy.Etag = []byte("new")
			}
			if u := p.service.update; u != nil {
				if u.Ingress != "" {
					next.Service.Ingress = u.Ingress
				}
				if u.RequireInvokerIAM {
					next.Service.InvokerIAMDisabled = false
				}
				if u.EnableIAP {
					next.Service.IAPEnabled = true
				}
				if u.Annotations != nil {
					next.Service.Annotations = maps.Clone(u.Annotations)
				}
			}
			for i, b := range next.Backends {
				for _, bp := range p.backends {
					if bp.write && bp.backend.Ref == b.Ref {
						next.Backends[i].IAPEnabled = true
					}
				}
			}
			p2 := planFor(DesiredFor(next.Service), withRecord(next))
			if n := p2.writes(); n != 0 {
				t.Errorf("after applying the plan, PlanFor wants %d more writes:\n%s", n, renderPlan(p2))
			}
			if p2.Outcome != outcome.Compliant && p2.Outcome != outcome.Conflict {
				t.Errorf("after applying the plan, outcome = %s, want compliant (or conflict for CDN)", p2.Outcome)
			}
		})
	}
}

func TestDesiredFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    *Service
		want Desired
	}{
		{"nil service", nil, Desired{}},
		{"no labels", &Service{}, Desired{}},
		{"enabled", &Service{Labels: map[string]string{"iap": "enabled"}}, Desired{Intent: Enforce, Label: "enabled", LabelSet: true}},
		{"disabled", &Service{Labels: map[string]string{"iap": "disabled"}}, Desired{Intent: Unmanaged, Label: "disabled", LabelSet: true}},
		{"empty value", &Service{Labels: map[string]string{"iap": ""}}, Desired{Intent: Invalid, Label: "", LabelSet: true}},
		{"other value", &Service{Labels: map[string]string{"iap": "on"}}, Desired{Intent: Invalid, Label: "on", LabelSet: true}},
		{"managed without label", &Service{Annotations: map[string]string{managedAnnotation: "true"}}, Desired{Managed: true}},
		{"marker with other value is not managed", &Service{Annotations: map[string]string{managedAnnotation: "yes"}}, Desired{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := DesiredFor(tc.s); got != tc.want {
				t.Errorf("DesiredFor(%+v) = %+v, want %+v", tc.s, got, tc.want)
			}
		})
	}
}

// Issue #19 item 10: a label key that only looks like iap (Cyrillic і,
// upper case) leaves the service unenforced; the outcome warns.
func TestLookalikeLabelWarns(t *testing.T) {
	for _, k := range []string{"іap", "IAP", "i-ap", "іар"} {
		s := tService()
		delete(s.Labels, LabelKey)
		s.Labels[k] = labelEnabled
		p := planFor(DesiredFor(s), &observed{Service: s})
		if p.Outcome != outcome.Skipped || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "looks like") {
			t.Errorf("label %q: outcome %s warnings %q, want skipped with a look-alike warning", k, p.Outcome, p.Warnings)
		}
	}
	s := tService()
	delete(s.Labels, LabelKey)
	s.Labels["team"] = "web"
	if p := planFor(DesiredFor(s), &observed{Service: s}); len(p.Warnings) != 0 {
		t.Errorf("ordinary labels warned: %q", p.Warnings)
	}
}

// writes reports how many write calls applying the plan takes (the
// tests' measure of a plan; apply does not need it).
func (p *plan) writes() int {
	n := 0
	if p.policy != nil && p.policy.after != nil {
		n++
	}
	if p.service != nil && !p.service.update.empty() {
		n++
	}
	for _, b := range p.backends {
		if b.write {
			n++
		}
	}
	return n + p.access.writes()
}
