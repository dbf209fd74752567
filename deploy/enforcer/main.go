// Command enforcer serves the EnforceIAP function (package functions) over
// HTTP with functions-framework-go, for the container image Cloud Build
// builds from deploy/enforcer/Dockerfile and deploys as a Cloud Run service.
//
// Why a main package here instead of deploying the functions/ package with
// the Cloud Run functions Go runtime: that runtime requires the function's
// package at the root of the uploaded source ("Your function must be in a Go
// package at the root of your project", Write Cloud Run functions → Source
// directory structure → Go, https://cloud.google.com/functions/docs/writing),
// and its buildpack parses the .go files of the source root to find it.
// iapguard's module root holds no package and the function lives in
// functions/, so we follow the Functions Framework's documented alternative
// (functions-framework-go README, "create a cmd/main.go"): a main package that
// imports the function package for its init registration and calls
// funcframework.Start; FUNCTION_TARGET selects the function. The result is an
// ordinary Cloud Run service receiving CloudEvents, which is what Eventarc
// delivers to. It also decouples the Go toolchain (go.mod asks for 1.26) from
// the runtime versions the functions builder offers.
//
// Environment: PORT (set by Cloud Run, default 8080), FUNCTION_TARGET
// (EnforceIAP), and everything functions.ConfigFromEnv reads.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	// Registers EnforceIAP (functions.CloudEvent in its init).
	_ "github.com/iapguard/iapguard/functions"
)

func main() {
	// Cloud Run sends requests to the container's PORT on any interface.
	if err := run(os.Getenv, ""); err != nil {
		slog.Error("enforcer stopped", "err", err)
		os.Exit(1)
	}
}

// run serves the function selected by FUNCTION_TARGET on host:PORT until
// the server fails; it returns an error instead of serving every registered
// function when FUNCTION_TARGET is unset. funcframework itself reads
// FUNCTION_TARGET from the process environment, so getenv must be os.Getenv
// or agree with it.
func run(getenv func(string) string, host string) error {
	if getenv("FUNCTION_TARGET") == "" {
		return fmt.Errorf("FUNCTION_TARGET is not set: name the function to serve (EnforceIAP)")
	}
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.StartHostPort(host, port); err != nil {
		return fmt.Errorf("serving %s on port %s: %w", getenv("FUNCTION_TARGET"), port, err)
	}
	return nil
}
