package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iapguard/iapguard/pkg/iapsetup"

	"github.com/iapguard/iapguard/pkg/outcome"
)

func newDoctorCmd(s *streams) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:   "doctor SERVICE",
		Short: "Walk IAP's prerequisites and troubleshooting list for a service and print each fix command",
		Long: `Check a Cloud Run service against the "Secure a Cloud Run service with IAP"
prerequisites and troubleshooting list, whether or not it is labelled:

  service        exists; labelled iap=enabled so iapguard keeps it compliant
  agent          the IAP service agent service-NUMBER@gcp-sa-iap... is provisioned
  invoker        the agent holds roles/run.invoker on the service
  iam-auth       no allUsers/allAuthenticatedUsers invoker; invoker IAM check on
  load-balancer  which backend services front it (serverless NEG → backend service)
  https          each fronting backend is reached through an HTTPS frontend
  cdn            Cloud CDN is off on each fronting backend (IAP is incompatible with it)
  backend-iap    IAP is on for each fronting backend
  ingress        internal-and-cloud-load-balancing behind a load balancer
  cloud-run-iap  Cloud Run's built-in IAP when no load balancer fronts it

Each finding is a line: ✓ fine, ✗ a problem (with the exact command that fixes
it), ! a warning. Two notes follow that no API can check: the Preview-era
run.routes.invoke allowlist, and stripping X-Serverless-Authorization before
forwarding requests.

The checks use the function's own planning code (as if the service were
labelled iap=enabled) and change nothing, except that looking up the IAP
service agent (generateServiceIdentity) creates it if it is missing — as
the fix for that finding would.

Exit status: 0 when nothing is wrong, 2 when a finding is ✗, 1 on errors.`,
		Example: `  iapctl doctor storefront --project my-project --region europe-west1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctor(cmd.Context(), s, &f, args[0])
		},
	}
	f.add(cmd, regionRequired, 2*time.Minute)
	return cmd
}

// Finding statuses.
const (
	findingOK      = "ok"
	findingProblem = "problem"
	findingWarning = "warning"
	findingNote    = "note"
)

// finding is one line of doctor's report (JSON names documented in
// docs/iapctl.md).
type finding struct {
	Check   string `json:"check"`
	Status  string `json:"status"`
	Message string `json:"message"`
	// Fix is a command that fixes a problem (or acts on a warning).
	Fix string `json:"fix,omitempty"`
}

type doctorReport struct {
	Name     string    `json:"name"`
	Project  string    `json:"project"`
	Region   string    `json:"region"`
	Service  string    `json:"service"`
	Mode     string    `json:"mode"`
	Findings []finding `json:"findings"`
	Problems int       `json:"problems"`
	Warnings int       `json:"warnings"`
	// labelled: the service is labelled iap=enabled (iapguard already
	// keeps it compliant), for the footer.
	labelled bool
}

func runDoctor(ctx context.Context, s *streams, f *opFlags, service string) error {
	in, err := f.inspectService(ctx, service, true)
	if err != nil {
		return fail(err)
	}
	rep := diagnose(in)
	if err := writeOutput(s.out, f.output, rep, func(w io.Writer) { writeDoctor(w, rep) }); err != nil {
		return fail(err)
	}
	if rep.Problems > 0 {
		return withCode(ExitNonCompliant, nil)
	}
	return nil
}

// gcloud command builders: real names filled in, flags as gcloud spells them.
func gcloudRunService(ref iapsetup.ServiceRef, verb string, flags ...string) string {
	return fmt.Sprintf("gcloud run services %s %s --project=%s --region=%s %s", verb, ref.Name, ref.Project, ref.Region, strings.Join(flags, " "))
}

func gcloudBackend(b iapsetup.BackendRef, flags ...string) string {
	scope := "--global"
	if b.Region != "" {
		scope = "--region=" + b.Region
	}
	return fmt.Sprintf("gcloud compute backend-services update %s --project=%s %s %s", b.Name, b.Project, scope, strings.Join(flags, " "))
}

// diagnose turns an inspection into findings. It reads the plan's steps
// (iapsetup's rules) and the observed resources; it decides nothing new.
func diagnose(in *inspection) doctorReport {
	ref, plan := in.Ref, in.Plan
	rep := doctorReport{Name: ref.String(), Project: ref.Project, Region: ref.Region, Service: ref.Name, Mode: string(plan.Mode)}
	add := func(check, status, msg, fix string) {
		rep.Findings = append(rep.Findings, finding{Check: check, Status: status, Message: gcloudIngress(msg), Fix: fix})
		switch status {
		case findingProblem:
			rep.Problems++
		case findingWarning:
			rep.Warnings++
		}
	}
	steps := map[string][]outcome.Step{}
	for _, st := range plan.Steps {
		steps[st.Name] = append(steps[st.Name], st)
	}
	step := func(n string) outcome.Step {
		if ss := steps[n]; len(ss) > 0 {
			return ss[0]
		}
		return outcome.Step{Name: n, Result: outcome.StepSkipped}
	}
	agent := in.Agent
	agentMember := "serviceAccount:" + agent
	if agent == "" {
		agentMember = "serviceAccount:service-PROJECT_NUMBER@gcp-sa-iap.iam.gserviceaccount.com"
	}

	// service and label
	label := gcloudRunService(ref, "update", "--update-labels=iap=enabled")
	switch d := in.Desired; {
	case d.Intent == iapsetup.Enforce:
		rep.labelled = true
		add("service", findingOK, fmt.Sprintf("Cloud Run service %s exists and is labelled iap=enabled: iapguard keeps it compliant", ref.Name), "")
	case d.Intent == iapsetup.Invalid:
		add("service", findingProblem, fmt.Sprintf("label iap=%q is not valid (iapguard rejects it): use iap=enabled or iap=disabled", d.Label), label)
	case d.LabelSet:
		add("service", findingWarning, fmt.Sprintf("service %s is labelled iap=%s: iapguard leaves it alone; the checks below show what it would do", ref.Name, d.Label), label)
	default:
		add("service", findingWarning, fmt.Sprintf("service %s has no iap label: iapguard leaves it alone; the checks below show what it would do", ref.Name), label)
	}

	// agent-identity
	if st := step(outcome.StepAgentIdentity); st.Result == outcome.StepOK {
		add("agent", findingOK, "IAP service agent "+agent+" is provisioned", "")
	} else {
		msg := "the IAP service agent is not provisioned (or cannot be looked up)"
		if in.AgentErr != nil {
			msg += ": " + oneLine(in.AgentErr).Error()
		}
		add("agent", findingProblem, msg, "gcloud beta services identity create --service=iap.googleapis.com --project="+ref.Project)
	}

	// invoker-binding
	switch st := step(outcome.StepInvokerBinding); st.Result {
	case outcome.StepOK:
		add("invoker", findingOK, agent+" holds roles/run.invoker on "+ref.Name, "")
	case outcome.StepChanged:
		add("invoker", findingProblem, "the IAP service agent does not hold roles/run.invoker on "+ref.Name+`: requests through IAP fail with "Your client does not have permission to get URL"`,
			gcloudRunService(ref, "add-iam-policy-binding", "--member="+agentMember, "--role=roles/run.invoker"))
	default:
		add("invoker", findingWarning, "cannot check the invoker binding: "+st.Message, "")
	}

	// iam-auth: public members and the invoker IAM check, from the plan's changes
	var public []string
	iamCheckOff := false
	for _, c := range plan.Changes {
		switch {
		case strings.HasPrefix(c.Field, "iamPolicy[") && c.After == "" && c.Before != "":
			public = append(public, c.Before)
		case c.Field == "invokerIamDisabled":
			iamCheckOff = true
		}
	}
	for _, m := range public {
		add("iam-auth", findingProblem, m+" holds roles/run.invoker: anyone can call the run.app URL, which IAP does not guard",
			gcloudRunService(ref, "remove-iam-policy-binding", "--member="+m, "--role=roles/run.invoker"))
	}
	if iamCheckOff {
		add("iam-auth", findingProblem, "the invoker IAM check is off (invokerIamDisabled): anyone can call the run.app URL",
			gcloudRunService(ref, "update", "--invoker-iam-check"))
	}
	if len(public) == 0 && !iamCheckOff {
		add("iam-auth", findingOK, "IAM authentication guards the run.app URL: no public invoker, invoker IAM check on", "")
	}

	// load balancer, per fronting backend: HTTPS frontend, CDN, IAP (from
	// the plan's backend-iap step for that backend)
	builtin := in.Service.IAPEnabled
	switch {
	case len(in.Fronting) == 0:
		add("load-balancer", findingOK, "no load balancer fronts "+ref.Name+" (no serverless NEG in "+ref.Region+" names it): Cloud Run's built-in IAP is the way in", "")
	default:
		var names []string
		for _, b := range in.Fronting {
			names = append(names, shortBackend(b.Ref.String()))
		}
		msg := "fronted by backend service(s) " + strings.Join(names, ", ") + " through serverless NEGs"
		if plan.Mode == outcome.Direct {
			msg += "; Cloud Run's built-in IAP is on, so it guards the load balancer's path too"
		}
		add("load-balancer", findingOK, msg, "")
	}
	backendSteps := map[string]outcome.Step{}
	for _, st := range steps[outcome.StepBackendIAP] {
		backendSteps[st.Resource] = st
	}
	for _, b := range in.Fronting {
		bn := shortBackend(b.Ref.String())
		st := backendSteps[b.Ref.String()]
		httpsMissing := findingProblem
		if plan.Mode != outcome.LoadBalancer {
			httpsMissing = findingWarning // IAP is Cloud Run's own here
		}
		if err, bad := in.FrontendErrs[b.Ref.String()]; bad {
			add("https", findingWarning, "cannot check the frontend of "+bn+": "+oneLine(err).Error(), "")
		} else if fe := in.Frontends[iapsetup.ResourcePath(b.SelfLink)]; fe.HTTPS {
			var rules []string
			for _, r := range fe.ForwardingRules {
				rules = append(rules, shortResource(r))
			}
			add("https", findingOK, bn+" is reached over HTTPS (forwarding rule "+strings.Join(rules, ", ")+")", "")
		} else {
			urlMap := "URL_MAP"
			if len(fe.URLMaps) > 0 {
				urlMap = fe.URLMaps[0][strings.LastIndex(fe.URLMaps[0], "/")+1:]
			}
			add("https", httpsMissing, "no HTTPS frontend reaches "+bn+": IAP needs at least one HTTPS protocol in the load balancer frontend",
				fmt.Sprintf("gcloud compute target-https-proxies create %s-https-proxy --project=%s --url-map=%s --ssl-certificates=CERTIFICATE && gcloud compute forwarding-rules create %s-https --project=%s --global --target-https-proxy=%s-https-proxy --ports=443",
					b.Ref.Name, ref.Project, urlMap, b.Ref.Name, ref.Project, b.Ref.Name))
		}
		noCDN := gcloudBackend(b.Ref, "--no-enable-cdn")
		switch {
		case !b.EnableCDN:
			add("cdn", findingOK, "Cloud CDN is off for "+bn, "")
		case st.Result == outcome.StepConflict && builtin:
			add("cdn", findingProblem, "Cloud CDN is on for "+bn+": cached responses are served by the load balancer without reaching Cloud Run's built-in IAP", noCDN)
		case st.Result == outcome.StepConflict:
			add("cdn", findingProblem, "Cloud CDN is on for "+bn+" and IAP is incompatible with Cloud CDN: decide which to keep", noCDN)
		default:
			add("cdn", findingWarning, "Cloud CDN is on for "+bn+" although IAP guards it: IAP is incompatible with Cloud CDN", noCDN)
		}
		switch st.Result {
		case outcome.StepOK:
			add("backend-iap", findingOK, st.Message, "")
		case outcome.StepChanged:
			add("backend-iap", findingProblem, "IAP is off for "+bn, gcloudBackend(b.Ref, "--iap=enabled"))
		case outcome.StepConflict:
			if builtin {
				break // the cdn finding above is the whole story: backend IAP stays off by design
			}
			add("backend-iap", findingProblem, "IAP cannot be enabled for "+bn+" while Cloud CDN is on", noCDN+" && "+gcloudBackend(b.Ref, "--iap=enabled"))
		default:
			add("backend-iap", findingWarning, dash(st.Message), "")
		}
	}

	// ingress
	switch st := step(outcome.StepIngress); st.Result {
	case outcome.StepOK:
		add("ingress", findingOK, "ingress is internal-and-cloud-load-balancing: the run.app URL does not bypass the load balancer", "")
	case outcome.StepChanged:
		add("ingress", findingProblem, "ingress is all although a load balancer fronts the service: the run.app URL bypasses it",
			gcloudRunService(ref, "update", "--ingress=internal-and-cloud-load-balancing"))
	case outcome.StepWarning:
		add("ingress", findingWarning, st.Message, "")
	default:
		add("ingress", findingOK, cmp.Or(st.Message, "ingress "+gcloudIngress(in.Service.Ingress)), "")
	}

	// Cloud Run's built-in IAP, when the plan relies on it
	if plan.Mode == outcome.Direct {
		switch st := step(outcome.StepDirectIAP); st.Result {
		case outcome.StepOK:
			add("cloud-run-iap", findingOK, "Cloud Run's built-in IAP is on", "")
		case outcome.StepChanged:
			add("cloud-run-iap", findingProblem, "no load balancer fronts the service and Cloud Run's built-in IAP is off",
				fmt.Sprintf("gcloud run services update %s --project=%s --region=%s --iap", ref.Name, ref.Project, ref.Region))
		default:
			add("cloud-run-iap", findingWarning, dash(st.Message), "")
		}
	}

	// access: who may pass IAP, per IAP resource (the plan's access steps).
	// The plan speaks of the state after its changes; where IAP is still
	// off now, say so rather than "IAP is on".
	iapOffNow := step(outcome.StepDirectIAP).Result == outcome.StepChanged
	for _, st := range steps[outcome.StepBackendIAP] {
		iapOffNow = iapOffNow || st.Result == outcome.StepChanged
	}
	for _, st := range steps[outcome.StepAccess] {
		if iapOffNow {
			st.Message = accessWhenIAPOff(st.Message)
		}
		switch st.Result {
		case outcome.StepOK:
			add("access", findingOK, st.Message, "")
		case outcome.StepChanged:
			add("access", findingProblem, "not yet granted: "+st.Message,
				fmt.Sprintf("iapctl enforce %s --project=%s --region=%s (with the function's --access-policies)", ref.Name, ref.Project, ref.Region))
		case outcome.StepRejected, outcome.StepFailed:
			add("access", findingProblem, st.Message, "")
		default:
			add("access", findingWarning, st.Message, "")
		}
	}

	// plan warnings not covered above (e.g. NEGs that select services by URL mask)
	for _, w := range plan.Warnings {
		if strings.Contains(w, "has no HTTPS frontend") || strings.Contains(w, "is stricter than") ||
			strings.Contains(w, "both IAP and Cloud CDN") {
			continue
		}
		add("warning", findingWarning, w, "")
	}

	add("run.routes.invoke", findingNote, "if requests through IAP still get 403 although the agent holds roles/run.invoker, redeploy the service; "+
		"projects that relied on the IAP-for-Cloud-Run Preview may be on an allowlist that skips the run.routes.invoke check for IAP — contact Cloud Run support to remove them from it", "")
	add("x-serverless-authorization", findingNote, "IAP calls Cloud Run with an X-Serverless-Authorization header; if "+ref.Name+
		" forwards requests to another IAM-protected Cloud Run service, strip that header first (Go: pkg/iapauth.StripServerlessAuthorization)", "")
	return rep
}

// accessWhenIAPOff rewords the plan's access message, which describes the
// state once IAP is on, for a service whose IAP is still off.
func accessWhenIAPOff(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "IAP is on and nobody holds "); ok {
		msg = "once IAP is on (it is off now, see above), nobody holds " + rest
		msg = strings.Replace(msg, ": every request is refused.", ": every request will be refused.", 1)
	}
	return msg
}

func writeDoctor(w io.Writer, rep doctorReport) {
	fmt.Fprintf(w, "doctor: %s\n\n", rep.Name)
	var notes []finding
	for _, fd := range rep.Findings {
		if fd.Status == findingNote {
			notes = append(notes, fd)
			continue
		}
		mark := map[string]string{findingOK: "✓", findingProblem: "✗", findingWarning: "!"}[fd.Status]
		fmt.Fprintf(w, "%s %-14s %s\n", mark, fd.Check, fd.Message)
		if fd.Fix != "" {
			fmt.Fprintf(w, "  %-14s fix: %s\n", "", fd.Fix)
		}
	}
	fmt.Fprintln(w, "\nnotes (no API can check these):")
	for _, fd := range notes {
		fmt.Fprintf(w, "! %s: %s\n", fd.Check, fd.Message)
	}
	fmt.Fprintf(w, "\n%d problem(s), %d warning(s).", rep.Problems, rep.Warnings)
	switch {
	case rep.Problems > 0 && rep.labelled:
		fmt.Fprintf(w, " Apply the fixes above, or let iapguard fix what it can now: iapctl enforce %s --project=%s --region=%s (add --dry-run to preview).",
			rep.Service, rep.Project, rep.Region)
	case rep.Problems > 0:
		fmt.Fprintf(w, " Apply the fixes above, or label the service iap=enabled and let iapguard fix what it can (preview: iapctl enforce %s --project=%s --region=%s --dry-run).",
			rep.Service, rep.Project, rep.Region)
	}
	fmt.Fprintln(w)
}
