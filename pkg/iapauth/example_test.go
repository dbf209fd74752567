package iapauth_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/iapguard/iapguard/pkg/iapauth"
)

// The lines a service adds: build a Verifier for its audience, wrap the
// handler, read the identity in handlers.
func ExampleMiddleware() {
	v, err := iapauth.NewVerifier(iapauth.Config{Audiences: []string{os.Getenv("IAP_AUDIENCE")}})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id, _ := iapauth.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s\n", id.Email)
	})
	log.Fatal(http.ListenAndServe(":8080", iapauth.Middleware(v)(mux)))
}

// A reverse proxy in front of another Cloud Run service must not pass on the
// X-Serverless-Authorization header IAP used to reach this service.
func ExampleStripForwardHeaders() {
	target, _ := url.Parse("https://downstream-abc-uc.a.run.app")
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			iapauth.StripForwardHeaders(pr.Out.Header)
		},
	}
	// With an older Director-style proxy, strip in the Director instead:
	//   director := proxy.Director
	//   proxy.Director = func(r *http.Request) { director(r); iapauth.StripForwardHeaders(r.Header) }
	_ = proxy
}

// A plain HTTP client that calls other services on behalf of the request.
func ExampleStripServerlessAuthorization() {
	client := &http.Client{Transport: iapauth.StripServerlessAuthorization(http.DefaultTransport)}
	_ = client
}

func ExampleCloudRunAudience() {
	fmt.Println(iapauth.CloudRunAudience(123456789012, "europe-west1", "hello"))
	fmt.Println(iapauth.BackendServiceAudience(123456789012, 4976554389610562900))
	// Output:
	// /projects/123456789012/locations/europe-west1/services/hello
	// /projects/123456789012/global/backendServices/4976554389610562900
}
