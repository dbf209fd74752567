// Command limited is functions/cmd/enforcer with one change, proposed for
// the functions layer and measured by the benchmark next to the enforcer
// as it is: at most $IAPGUARD_BENCH_LIMIT (default 100) events are handled
// at once per instance; the others wait (cheaply: an idle request) until a
// slot frees or their deadline passes (then the event is redelivered).
// Everything else — configuration, EnforceIAP itself — is the enforcer's.
package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	ff "github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/iapguard/iapguard/functions"
)

// target is the registered name of the limited function.
const target = "EnforceIAPLimited"

func main() {
	limit := 100
	if v := os.Getenv("IAPGUARD_BENCH_LIMIT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "limited: IAPGUARD_BENCH_LIMIT=%q: want a positive integer\n", v)
			os.Exit(2)
		}
		limit = n
	}
	slots := make(chan struct{}, limit)
	ff.HTTP(target, func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		case <-r.Context().Done():
			// Not 2xx: Eventarc redelivers the event.
			http.Error(w, fmt.Sprintf("waiting for one of %d event slots: %v", limit, r.Context().Err()), http.StatusServiceUnavailable)
			return
		}
		defer func() { <-slots }()
		functions.EnforceIAP(w, r)
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	os.Setenv("FUNCTION_TARGET", target)
	if err := funcframework.StartHostPort(os.Getenv("HOST"), port); err != nil {
		fmt.Fprintln(os.Stderr, "limited:", err)
		os.Exit(1)
	}
}
