// Command iapbench runs iapguard's performance benchmark (test/bench) and
// writes its report: every scenario's event → outcome latency, round trips,
// API calls by method and quota use, each against its computed minimum.
// Run it from the module root (it builds functions/cmd/enforcer and the
// reference programs with `go build`):
//
//	go run ./cmd/iapbench                      # full run → bench/results/full.txt
//	go run ./cmd/iapbench -config small -out -  # CI-sized run to stdout
//	go run ./cmd/iapbench -only burst,rss      # some scenarios only
//	go run ./cmd/iapbench -config org          # organisation-scale sweep → bench/results/org.txt
//	go run ./cmd/iapbench -config org-small -out -  # the same, 50 projects
//
// It exits 2 when a target is missed, 1 when the run fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/iapguard/iapguard/test/bench"
)

func main() {
	config := flag.String("config", "full", "full, small, org (organisation-scale sweep) or org-small")
	only := flag.String("only", "", "comma-separated scenarios: warm, cold, lb, direct, burst, rss, start (default: all)")
	out := flag.String("out", "", `report file ("-": stdout; default bench/results/CONFIG.txt under the module root)`)
	quiet := flag.Bool("q", false, "no progress lines on stderr")
	flag.Parse()

	if *config == "org" || *config == "org-small" {
		os.Exit(runOrg(*config, *out, *quiet))
	}
	var cfg bench.Config
	switch *config {
	case "full":
		cfg = bench.Full()
	case "small":
		cfg = bench.Small()
	default:
		fmt.Fprintf(os.Stderr, "iapbench: -config %q: want full or small\n", *config)
		os.Exit(1)
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
		cfg.Name += "-" + strings.ReplaceAll(*only, ",", "-")
	}
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "iapbench:", err)
		os.Exit(1)
	}
	os.Exit(report(r, r.Targets(), cfg.Name, *out))
}

// runOrg runs the organisation-scale sweep benchmark (issue #18) and
// returns the exit status.
func runOrg(config, out string, quiet bool) int {
	cfg := bench.OrgFull()
	if config == "org-small" {
		cfg = bench.OrgSmall()
	}
	if !quiet {
		cfg.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := bench.RunOrg(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "iapbench:", err)
		return 1
	}
	return report(r, r.OrgTargets(), cfg.Name, out)
}

// report writes r to stdout (out "-") or to out (default
// bench/results/NAME.txt under the module root), names the targets missed
// and returns the exit status: 2 when one was missed, 1 when the report
// could not be written.
func report(r interface{ Format(io.Writer) }, targets []bench.Target, name, out string) int {
	if out == "-" {
		r.Format(os.Stdout)
	} else {
		path := out
		if path == "" {
			root, err := bench.ModuleRoot()
			if err != nil {
				fmt.Fprintln(os.Stderr, "iapbench:", err)
				return 1
			}
			path = filepath.Join(root, "bench", "results", name+".txt")
		}
		if err := bench.WriteReport(r, path); err != nil {
			fmt.Fprintln(os.Stderr, "iapbench:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "iapbench: report written to", path)
	}
	code := 0
	for _, t := range targets {
		if !t.Met {
			fmt.Fprintf(os.Stderr, "iapbench: target missed: %s: %s\n", t.What, t.Measured)
			code = 2
		}
	}
	return code
}
