package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/emulator/core"
)

type emulatorFlags struct {
	addr      string
	projects  []string
	folders   []string
	deliverTo []string
	principal string
	lro       string
	duplicate float64
	reorder   float64
	delay     time.Duration
	seed      uint64

	serviceAccounts     []string
	identityPropagation time.Duration
	assetIndexLag       time.Duration
}

func newEmulatorCmd(s *streams) *cobra.Command {
	var f emulatorFlags
	cmd := &cobra.Command{
		Use:   "emulator",
		Short: "Run the local Google Cloud emulator (Cloud Run, Compute, Service Usage, IAP, Pub/Sub, Logging, Eventarc)",
		Long: `Run the emulator on one address until interrupted.

Once ready it prints the environment clients need:

  IAPGUARD_EMULATOR_HOST=127.0.0.1:PORT
  PUBSUB_EMULATOR_HOST=127.0.0.1:PORT

Every mutation writes an audit-log entry; entries matching the trigger
definitions in eventarc/ are POSTed to each --deliver-to URL as binary-mode
CloudEvents, as Eventarc does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return withCode(ExitError, err)
			}
			start := time.Now()
			emu, err := emulator.New(opts)
			if err != nil {
				return withCode(ExitError, err)
			}
			if err := emu.Start(f.addr); err != nil {
				return withCode(ExitError, err)
			}
			defer emu.Close()
			for _, line := range emu.Env() {
				fmt.Fprintln(s.out, line)
			}
			fmt.Fprintf(s.err, "emulator ready on %s in %s; projects:", emu.Addr(), time.Since(start).Round(10*time.Microsecond))
			for _, p := range emu.Core.Projects.All() {
				fmt.Fprintf(s.err, " %s=%d", p.ID, p.Number)
				if p.Parent != "" {
					fmt.Fprintf(s.err, "@%s", p.Parent)
				}
			}
			fmt.Fprintln(s.err)
			<-cmd.Context().Done()
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8786", "host:port to listen on (port 0 picks a free one)")
	fl.StringArrayVar(&f.projects, "project", nil, "emulated project as ID=NUMBER, or ID=NUMBER@PARENT with PARENT organizations/N or folders/N (repeatable; default demo-project=123456789012)")
	fl.StringArrayVar(&f.folders, "folder", nil, "emulated Resource Manager folder as ID=PARENT, ID a number, PARENT organizations/N or folders/N (repeatable)")
	fl.StringArrayVar(&f.deliverTo, "deliver-to", nil, "URL that receives Eventarc CloudEvents (repeatable)")
	fl.StringVar(&f.principal, "principal", core.DefaultPrincipal, "caller recorded in audit entries when a request names none")
	fl.StringVar(&f.lro, "lro", "on-first-poll", "how Cloud Run operations complete: on-first-poll, immediate")
	fl.Float64Var(&f.duplicate, "duplicate", 0, "probability (0..1) that an event is delivered twice")
	fl.Float64Var(&f.reorder, "reorder", 0, "probability (0..1) that an event is held back behind the next one")
	fl.DurationVar(&f.delay, "delay", 0, "extra delay before each delivery")
	fl.StringArrayVar(&f.serviceAccounts, "service-account", nil, "a service account that exists (IAM policy writes naming an unknown one get 400 INVALID_ARGUMENT, as on Google); repeatable")
	fl.DurationVar(&f.identityPropagation, "identity-propagation", 0, "how long a service agent created by generateServiceIdentity stays unknown to IAM policy writes (IAM's eventual consistency)")
	fl.DurationVar(&f.assetIndexLag, "asset-index-lag", 0, "how long a Cloud Run change takes to show in Cloud Asset Inventory searches (Google: minutes)")
	fl.Uint64Var(&f.seed, "seed", 0, "random seed for delivery quirks and injected error draws (0: delivery random, faults a fixed default)")
	return cmd
}

func (f *emulatorFlags) options() (emulator.Options, error) {
	var opts emulator.Options
	ids, numbers := map[string]bool{}, map[int64]bool{}
	for _, p := range f.projects {
		pr, err := core.ParseProject(p)
		if err != nil {
			return opts, fmt.Errorf("--project: %w", err)
		}
		if ids[pr.ID] || numbers[pr.Number] {
			return opts, fmt.Errorf("--project %s: the project id or number is already used by another --project", p)
		}
		ids[pr.ID], numbers[pr.Number] = true, true
		opts.Projects = append(opts.Projects, pr)
	}
	seenFolders := map[string]bool{}
	for _, fs := range f.folders {
		fo, err := core.ParseFolder(fs)
		if err != nil {
			return opts, fmt.Errorf("--folder: %w", err)
		}
		if seenFolders[fo.ID] {
			return opts, fmt.Errorf("--folder %s: folder %s is already given by another --folder", fs, fo.ID)
		}
		seenFolders[fo.ID] = true
		opts.Folders = append(opts.Folders, fo)
	}
	if err := core.NewProjects(opts.Projects...).AddFolders(opts.Folders...); err != nil {
		return opts, fmt.Errorf("--project/--folder: %w", err)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"--duplicate", f.duplicate}, {"--reorder", f.reorder}} {
		if p.v < 0 || p.v > 1 {
			return opts, fmt.Errorf("%s %v: want a probability between 0 and 1", p.name, p.v)
		}
	}
	opts.Principal = f.principal
	opts.DeliverTo = f.deliverTo
	opts.Run.LRO = f.lro
	if err := opts.Run.Validate(); err != nil {
		return opts, fmt.Errorf("--lro: %w", err)
	}
	opts.FaultSeed = f.seed
	for _, sa := range f.serviceAccounts {
		if local, domain, ok := strings.Cut(sa, "@"); !ok || local == "" || !strings.HasSuffix(domain, "gserviceaccount.com") {
			return opts, fmt.Errorf("--service-account %q: want an email ending in gserviceaccount.com", sa)
		}
	}
	opts.ServiceAccounts = f.serviceAccounts
	if f.identityPropagation < 0 {
		return opts, fmt.Errorf("--identity-propagation %s: must not be negative", f.identityPropagation)
	}
	opts.IdentityPropagation = f.identityPropagation
	if f.assetIndexLag < 0 {
		return opts, fmt.Errorf("--asset-index-lag %s: must not be negative", f.assetIndexLag)
	}
	opts.Asset.IndexLag = f.assetIndexLag
	opts.Delivery.Duplicate = f.duplicate
	opts.Delivery.Reorder = f.reorder
	opts.Delivery.Delay = f.delay
	opts.Delivery.Seed = f.seed
	return opts, nil
}
