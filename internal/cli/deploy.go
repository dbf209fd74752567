package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/iapguard/iapguard/internal/deploy"
	"github.com/iapguard/iapguard/internal/iamperm"
)

// newDeployCmd is `iapctl deploy`: renders deployment artefacts from the
// sources of truth (eventarc/triggers.yaml, internal/iamperm). It talks to
// no API; cloudbuild.yaml and docs/deploy.md run its output.
func newDeployCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Render deployment artefacts: custom IAM roles, Eventarc trigger commands, Terraform inputs",
		Long: `Render what deploying iapguard needs from the single sources of truth:
the Eventarc trigger definitions (eventarc/triggers.yaml) and the table of
Google API methods and IAM permissions (internal/iamperm).

Nothing here calls Google Cloud; pipe the output to gcloud or a file.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDeployRoleCmd(s), newDeployTriggersCmd(s), newDeployPermissionsCmd(s))
	return cmd
}

func newDeployRoleCmd(s *streams) *cobra.Command {
	var who, format string
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Print the least-privilege custom role for the function or the operator",
		Long: `Print a custom role generated from the permission table.

  --format=yaml       for gcloud iam roles create ROLE_ID --project=P --file=-
  --format=json       the same as JSON
  --format=terraform  the JSON deploy/terraform/generated/ holds

Permissions granted on a single resource (iam.serviceAccounts.actAs on each
runtime service account, pubsub.topics.publish on the outcomes topic) are not
in the role; deployment grants them on that resource.`,
		Example: `  iapctl deploy role --who=function | \
    gcloud iam roles create iapguardEnforcer --project=my-project --file=/dev/stdin`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var (
				b   []byte
				err error
			)
			switch format {
			case "yaml", "json":
				var r iamperm.RoleDefinition
				if r, err = iamperm.CustomRole(who); err != nil {
					return withCode(ExitError, fmt.Errorf("--who: %w", err))
				}
				if format == "yaml" {
					b, err = r.YAML()
				} else {
					b, err = r.JSON()
				}
			case "terraform":
				b, err = deploy.TerraformRoleJSON(who)
				if err != nil {
					return withCode(ExitError, fmt.Errorf("--who: %w", err))
				}
			default:
				return withCode(ExitError, fmt.Errorf("--format %q: want yaml, json or terraform", format))
			}
			if err != nil {
				return withCode(ExitError, err)
			}
			_, err = s.out.Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&who, "who", iamperm.WhoFunction, "whose role: function (the deployed enforcer) or operator (people running iapctl)")
	cmd.Flags().StringVar(&format, "format", "yaml", "output format: yaml, json or terraform")
	return cmd
}

type deployTriggersFlags struct {
	project, region, service, account, prefix, deadLetter, format string
	maxAttempts                                                   int
}

func newDeployTriggersCmd(s *streams) *cobra.Command {
	var f deployTriggersFlags
	cmd := &cobra.Command{
		Use:   "triggers",
		Short: "Render the Eventarc triggers from eventarc/triggers.yaml",
		Long: `Render the Eventarc triggers defined in eventarc/triggers.yaml.

  --format=gcloud      a bash script that creates or updates every trigger,
                       sets a dead-letter policy on each trigger's Pub/Sub
                       subscription and deletes prefixed triggers that are no
                       longer defined (needs --project and --region)
  --format=terraform   the JSON deploy/terraform/generated/triggers.json holds
  --format=log-filter  the Cloud Logging filter for an aggregated log sink that
                       routes other projects' audit entries to the replay topic

Audit-log triggers for global resources are created in location "global",
the others in --region; all deliver to --function-service in --region.`,
		Example: `  iapctl deploy triggers --project=my-project --region=us-central1 > triggers.sh && bash triggers.sh`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var out string
			switch f.format {
			case "gcloud":
				cfg := deploy.Config{
					Project:             f.project,
					Region:              f.region,
					FunctionService:     f.service,
					ServiceAccount:      f.account,
					TriggerPrefix:       f.prefix,
					DeadLetterTopic:     f.deadLetter,
					MaxDeliveryAttempts: f.maxAttempts,
				}
				if cfg.ServiceAccount == "" && cfg.Project != "" {
					cfg.ServiceAccount = deploy.TriggerAccountEmail(cfg.Project)
				}
				script, err := deploy.GcloudTriggerScript(cfg)
				if err != nil {
					return withCode(ExitError, err)
				}
				out = script
			case "terraform":
				b, err := deploy.TerraformTriggersJSON()
				if err != nil {
					return withCode(ExitError, err)
				}
				out = string(b)
			case "log-filter":
				filter, err := deploy.LogSinkFilter()
				if err != nil {
					return withCode(ExitError, err)
				}
				out = filter + "\n"
			default:
				return withCode(ExitError, fmt.Errorf("--format %q: want gcloud, terraform or log-filter", f.format))
			}
			_, err := fmt.Fprint(s.out, out)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.project, "project", "", "project of the function and its triggers (gcloud format)")
	fl.StringVar(&f.region, "region", "", "region of the function, e.g. us-central1 (gcloud format)")
	fl.StringVar(&f.service, "function-service", deploy.DefaultService, "Cloud Run service that runs the EnforceIAP function")
	fl.StringVar(&f.account, "service-account", "", "trigger identity (default "+deploy.TriggerAccount+"@PROJECT.iam.gserviceaccount.com)")
	fl.StringVar(&f.prefix, "prefix", deploy.DefaultTriggerPrefix, "prefix of every trigger name")
	fl.StringVar(&f.deadLetter, "dead-letter-topic", deploy.DeadLetterTopic, "topic id that receives events after --max-delivery-attempts")
	fl.IntVar(&f.maxAttempts, "max-delivery-attempts", deploy.DefaultMaxDeliveryAttempts, "delivery attempts before an event is dead-lettered (5-100)")
	fl.StringVar(&f.format, "format", "gcloud", "output format: gcloud, terraform or log-filter")
	return cmd
}

func newDeployPermissionsCmd(s *streams) *cobra.Command {
	var format, who string
	cmd := &cobra.Command{
		Use:   "permissions",
		Short: "Print the table of Google API methods iapguard calls and the IAM permissions each needs",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if who != "" && who != iamperm.WhoFunction && who != iamperm.WhoOperator {
				return withCode(ExitError, fmt.Errorf("--who %q: want function, operator or empty for all", who))
			}
			var rows []iamperm.Entry
			for _, e := range iamperm.Table() {
				if who == "" || e.Who == who {
					rows = append(rows, e)
				}
			}
			switch format {
			case "table":
				w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "METHOD\tWHO\tCONFIDENCE\tPERMISSIONS")
				for _, e := range rows {
					perms := make([]string, len(e.Permissions))
					for i, p := range e.Permissions {
						perms[i] = p
						if where, ok := e.OnResource[p]; ok {
							perms[i] = p + " (on " + strings.SplitN(where, " (", 2)[0] + ")"
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Method, e.Who, e.Confidence, strings.Join(perms, ", "))
				}
				return w.Flush()
			case "json":
				type row struct {
					Method      string            `json:"method"`
					Who         string            `json:"who"`
					Confidence  string            `json:"confidence"`
					Permissions []string          `json:"permissions"`
					OnResource  map[string]string `json:"onResource,omitempty"`
					Note        string            `json:"note"`
				}
				out := make([]row, 0, len(rows))
				for _, e := range rows {
					out = append(out, row{e.Method, e.Who, string(e.Confidence), slices.Clone(e.Permissions), e.OnResource, e.Note})
				}
				return writeJSON(s.out, out)
			default:
				return withCode(ExitError, fmt.Errorf("--format %q: want table or json", format))
			}
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().StringVar(&who, "who", "", "only methods called by: function or operator (default all)")
	return cmd
}
