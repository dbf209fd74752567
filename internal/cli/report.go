package cli

import (
	"slices"
	"strings"

	"github.com/iapguard/iapguard/pkg/iapsetup"

	"github.com/iapguard/iapguard/pkg/outcome"
)

// planView is what the commands show of a reconcile result or a plan.
type planView struct {
	Outcome  outcome.Kind
	Mode     outcome.Mode
	Reason   string
	Steps    []outcome.Step
	Changes  []outcome.Change
	Warnings []string
	DryRun   bool
}

func viewOfResult(r *iapsetup.Result) planView {
	return planView{r.Outcome, r.Mode, r.Reason, r.Steps, r.Changes, r.Warnings, r.DryRun}
}

// serviceReport is one service in audit and enforce output. Its JSON field
// names are a documented interface (docs/iapctl.md).
type serviceReport struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	Region  string `json:"region"`
	Service string `json:"service"`
	// Label is the value of the iap label ("" when absent).
	Label string `json:"label"`
	// Labelled: the label asks iapguard to act (any value but "disabled").
	Labelled bool `json:"labelled"`
	// Outcome of the reconcile (of the plan, for a dry run).
	Outcome string `json:"outcome"`
	// State: compliant, remediated, non-compliant, conflict, rejected,
	// failed, unmanaged, opted-out.
	State     string         `json:"state"`
	Compliant bool           `json:"compliant"`
	DryRun    bool           `json:"dryRun"`
	Mode      string         `json:"mode,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Backends  []string       `json:"backends"`
	Bypasses  []string       `json:"bypasses"`
	Rules     []ruleReport   `json:"rules"`
	Changes   []changeReport `json:"changes"`
	Warnings  []string       `json:"warnings"`
	// Error is set when the reconcile could not finish.
	Error string `json:"error,omitempty"`
}

type ruleReport struct {
	Rule     string `json:"rule"`
	Status   string `json:"status"`
	Resource string `json:"resource,omitempty"`
	Message  string `json:"message"`
}

type changeReport struct {
	Resource string `json:"resource"`
	Field    string `json:"field"`
	Before   string `json:"before"`
	After    string `json:"after"`
}

// newServiceReport describes ref (listed or read as svc, which may be nil)
// and what the reconcile or plan v says about it.
func newServiceReport(ref iapsetup.ServiceRef, svc *iapsetup.Service, v planView, rerr error) serviceReport {
	r := serviceReport{
		Name: ref.String(), Project: ref.Project, Region: ref.Region, Service: ref.Name,
		Outcome: string(v.Outcome), DryRun: v.DryRun, Mode: string(v.Mode), Reason: v.Reason,
		Backends: []string{}, Bypasses: []string{}, Rules: []ruleReport{}, Changes: []changeReport{}, Warnings: []string{},
	}
	if svc != nil {
		d := iapsetup.DesiredFor(svc)
		r.Label = d.Label
		r.Labelled = d.Intent != iapsetup.Unmanaged
	}
	if rerr != nil {
		r.Error = oneLine(rerr).Error()
	}
	switch v.Outcome {
	case outcome.Compliant:
		r.State, r.Compliant = "compliant", true
	case outcome.Remediated:
		r.State, r.Compliant = "remediated", true
		if v.DryRun {
			r.State, r.Compliant = "non-compliant", false
		}
	case outcome.Skipped:
		r.State = "unmanaged"
	default:
		r.State = string(v.Outcome)
	}
	for _, s := range v.Steps {
		r.Rules = append(r.Rules, ruleReport{Rule: s.Name, Status: string(s.Result), Resource: s.Resource, Message: s.Message})
		if s.Name == outcome.StepBackendIAP && s.Resource != "" && !slices.Contains(r.Backends, s.Resource) {
			r.Backends = append(r.Backends, s.Resource)
		}
	}
	for _, c := range v.Changes {
		r.Changes = append(r.Changes, changeReport{Resource: c.Resource, Field: c.Field, Before: c.Before, After: c.After})
	}
	r.Warnings = append(r.Warnings, v.Warnings...)
	r.Bypasses = bypasses(v)
	return r
}

// needsAttention reports whether a labelled service is not compliant, or
// its reconcile did not finish.
func (r *serviceReport) needsAttention() bool {
	return (r.Labelled && !r.Compliant) || r.Error != ""
}

// bypasses lists the ways around IAP that the plan closes (or, for a
// conflict, cannot close), as short tokens:
//
//	public:MEMBER            MEMBER holds roles/run.invoker (the run.app URL is open)
//	invoker-iam-check-off    invokerIamDisabled: no IAM check on the run.app URL
//	ingress-all              ingress all although a load balancer fronts the service
//	no-iap:BACKEND           a fronting backend service without IAP (global/NAME or REGION/NAME)
//	cdn:BACKEND              Cloud CDN on a fronting backend: IAP cannot be enabled there, or
//	                         cached responses skip Cloud Run's built-in IAP
//	run.app-no-iap           no load balancer and Cloud Run's built-in IAP off
func bypasses(v planView) []string {
	out := []string{}
	for _, c := range v.Changes {
		switch {
		case strings.HasPrefix(c.Field, "iamPolicy[") && c.After == "" && c.Before != "":
			out = append(out, "public:"+c.Before)
		case c.Field == "invokerIamDisabled":
			out = append(out, "invoker-iam-check-off")
		case c.Field == "ingress":
			out = append(out, "ingress-all")
		}
	}
	for _, s := range v.Steps {
		switch {
		case s.Name == outcome.StepBackendIAP && s.Result == outcome.StepChanged:
			out = append(out, "no-iap:"+shortBackend(s.Resource))
		case s.Name == outcome.StepBackendIAP && s.Result == outcome.StepConflict:
			out = append(out, "cdn:"+shortBackend(s.Resource))
		case s.Name == outcome.StepDirectIAP && (s.Result == outcome.StepChanged || s.Result == outcome.StepConflict):
			out = append(out, "run.app-no-iap")
		}
	}
	return out
}

// ruleCell is the table cell of a step status; applied tells a planned
// change ("fix") from a made one ("fixed").
func ruleCell(st outcome.StepResult, dryRun bool) string {
	switch st {
	case outcome.StepOK:
		return "ok"
	case outcome.StepChanged:
		if dryRun {
			return "fix"
		}
		return "fixed"
	case outcome.StepConflict:
		return "conflict"
	case outcome.StepWarning:
		return "warn"
	case outcome.StepFailed:
		return "fail"
	case outcome.StepRejected:
		return "rejected"
	}
	return "-"
}

// statusRank orders step statuses, worst last.
func statusRank(s string) int {
	return slices.Index([]string{"", "skipped", "ok", "warning", "changed", "rejected", "conflict", "failed"}, s)
}

// ruleColumns are the audit table's rule columns and the steps they show.
var ruleColumns = []struct {
	head  string
	steps []string
}{
	{"AGENT", []string{outcome.StepAgentIdentity}},
	{"INVOKER", []string{outcome.StepInvokerBinding}},
	{"IAM", []string{outcome.StepIAMAuth}},
	{"INGRESS", []string{outcome.StepIngress}},
	{"IAP", []string{outcome.StepBackendIAP, outcome.StepDirectIAP}},
	{"ACCESS", []string{outcome.StepAccess}},
}

// ruleCells returns the rule columns of r: the worst status of each
// column's steps.
func (r *serviceReport) ruleCells() []string {
	var cells []string
	for _, col := range ruleColumns {
		worst := ""
		for _, rr := range r.Rules {
			if slices.Contains(col.steps, string(rr.Rule)) && statusRank(rr.Status) > statusRank(worst) {
				worst = rr.Status
			}
		}
		cells = append(cells, ruleCell(outcome.StepResult(worst), r.DryRun))
	}
	return cells
}
