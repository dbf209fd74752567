// Command enforcer serves the EnforceIAP function locally exactly as
// functions-framework-go does on Cloud Run functions:
//
//	PORT=8080 IAPGUARD_EMULATOR_HOST=127.0.0.1:8786 PUBSUB_EMULATOR_HOST=127.0.0.1:8786 \
//	  GOOGLE_CLOUD_PROJECT=demo-project IAPGUARD_OUTCOMES_TOPIC=iapguard-outcomes \
//	  go run ./functions/cmd/enforcer
//
// It listens on $PORT (default 8080) on every interface, like the
// framework; set HOST (e.g. 127.0.0.1) to restrict it. Configuration is the
// function's own (docs/configuration.md); it is checked at start and
// logged as one JSON entry on stdout (every problem at once, as an ERROR).
package main

import (
	"fmt"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	"github.com/iapguard/iapguard/functions"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if os.Getenv("FUNCTION_TARGET") == "" {
		// Serve EnforceIAP at "/", as Cloud Run functions does.
		os.Setenv("FUNCTION_TARGET", functions.FunctionName)
	}
	// One JSON log entry now: the configuration, or every problem with it.
	// A misconfigured function still serves, answering every event 500 so
	// Eventarc keeps it until the configuration is fixed.
	_ = functions.ReportConfig()
	if err := funcframework.StartHostPort(os.Getenv("HOST"), port); err != nil {
		fmt.Fprintln(os.Stderr, "enforcer:", err)
		os.Exit(1)
	}
}
