package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/iapguard/iapguard/pkg/iapauth"
)

func newAudienceCmd(s *streams) *cobra.Command {
	var f opFlags
	cmd := &cobra.Command{
		Use:   "audience SERVICE",
		Short: "Print the IAP JWT audience(s) a service's IAP assertions carry (for pkg/iapauth)",
		Long: `Print the aud claim(s) of the IAP assertions (x-goog-iap-jwt-assertion) that
reach a Cloud Run service — the values to give pkg/iapauth's verifier.

One audience per backend service that fronts the service (found the way the
reconciler finds them: serverless NEGs naming the service, backend services
using those NEGs):
  /projects/NUMBER/global/backendServices/ID             global backend service
  /projects/NUMBER/regions/REGION/backendServices/ID     regional backend service
and, when no load balancer fronts the service (or Cloud Run's built-in IAP is
on), Cloud Run's own form:
  /projects/NUMBER/locations/REGION/services/NAME

The project number comes from --project when it is numeric, else from the
IAP service agent's email (generateServiceIdentity, which creates the agent
if it is missing).`,
		Example: `  iapctl audience storefront --project my-project --region europe-west1
  IAP_AUDIENCE=$(iapctl audience storefront --project my-project --region europe-west1 -o json | jq -r '.audiences[0].audience')`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAudience(cmd.Context(), s, &f, args[0])
		},
	}
	f.add(cmd, regionRequired, time.Minute)
	return cmd
}

// audienceReport is audience's JSON output.
type audienceReport struct {
	Name          string         `json:"name"`
	ProjectNumber int64          `json:"projectNumber"`
	Mode          string         `json:"mode"`
	Audiences     []audienceItem `json:"audiences"`
}

type audienceItem struct {
	Audience string `json:"audience"`
	// Kind: global-backend-service, regional-backend-service or cloud-run.
	Kind string `json:"kind"`
	// BackendService is the backend service path (backend kinds only).
	BackendService string `json:"backendService,omitempty"`
	// IAPEnabled reports whether IAP is on where this audience comes from;
	// tokens carry an audience only when it is.
	IAPEnabled bool `json:"iapEnabled"`
}

func runAudience(ctx context.Context, s *streams, f *opFlags, service string) error {
	in, err := f.inspectService(ctx, service, false)
	if err != nil {
		return fail(err)
	}
	rep, err := audiences(in)
	if err != nil {
		return fail(err)
	}
	if err := writeOutput(s.out, f.output, rep, func(w io.Writer) { writeAudiences(w, rep) }); err != nil {
		return fail(err)
	}
	return nil
}

// audiences computes the audiences with pkg/iapauth's helpers.
func audiences(in *inspection) (audienceReport, error) {
	num, err := in.projectNumber()
	if err != nil {
		return audienceReport{}, err
	}
	rep := audienceReport{Name: in.Ref.String(), ProjectNumber: num, Mode: string(in.Plan.Mode), Audiences: []audienceItem{}}
	for _, b := range in.Fronting {
		id, err := strconv.ParseUint(b.ID, 10, 64)
		if err != nil {
			return audienceReport{}, fmt.Errorf("backend service %s has no numeric id (%q)", b.Ref.String(), b.ID)
		}
		it := audienceItem{BackendService: b.Ref.String(), IAPEnabled: b.IAPEnabled}
		if b.Ref.Region == "" {
			it.Kind, it.Audience = "global-backend-service", iapauth.BackendServiceAudience(num, id)
		} else {
			it.Kind, it.Audience = "regional-backend-service", iapauth.RegionalBackendServiceAudience(num, b.Ref.Region, id)
		}
		rep.Audiences = append(rep.Audiences, it)
	}
	if len(in.Fronting) == 0 || in.Service.IAPEnabled {
		rep.Audiences = append(rep.Audiences, audienceItem{
			Kind: "cloud-run", Audience: iapauth.CloudRunAudience(num, in.Ref.Region, in.Ref.Name), IAPEnabled: in.Service.IAPEnabled,
		})
	}
	// Audiences IAP puts in tokens today first.
	sort.SliceStable(rep.Audiences, func(i, j int) bool { return rep.Audiences[i].IAPEnabled && !rep.Audiences[j].IAPEnabled })
	return rep, nil
}

func writeAudiences(w io.Writer, rep audienceReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AUDIENCE\tKIND\tBACKEND SERVICE\tIAP")
	for _, a := range rep.Audiences {
		on := "on"
		if !a.IAPEnabled {
			on = "off (no tokens until IAP is on)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Audience, a.Kind, dash(shortBackend(a.BackendService)), on)
	}
	tw.Flush()
}
