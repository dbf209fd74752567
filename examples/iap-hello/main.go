// Command iap-hello is a minimal service for running behind Identity-Aware
// Proxy: every request must carry a valid IAP assertion, and the handler
// greets the verified user. /forward/... proxies to another service without
// passing on X-Serverless-Authorization, as Google requires of services that
// forward requests.
//
// Environment:
//
//	IAP_AUDIENCE  accepted audience(s), comma-separated (required), e.g.
//	              /projects/123456789012/global/backendServices/4976554389610562900
//	              /projects/123456789012/locations/europe-west1/services/iap-hello
//	IAP_JWKS_URL  IAP key set URL (default https://www.gstatic.com/iap/verify/public_key-jwk)
//	FORWARD_URL   base URL /forward/ proxies to (optional; /forward/ answers 503 without it)
//	PORT          listen port (default 8080; Cloud Run sets it)
//
// /healthz answers without IAP, for load balancer health checks, which do
// not carry the assertion.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/iapguard/iapguard/pkg/iapauth"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		logger.Error("listen", "port", port, "error", err)
		os.Exit(1)
	}
	if err := run(ctx, os.Getenv, ln, logger); err != nil {
		logger.Error("serve", "error", err)
		os.Exit(1)
	}
}

// run serves on ln until ctx ends, then shuts down gracefully.
func run(ctx context.Context, getenv func(string) string, ln net.Listener, logger *slog.Logger) error {
	h, err := newHandler(getenv, logger)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// newHandler builds the service from its environment.
func newHandler(getenv func(string) string, logger *slog.Logger) (http.Handler, error) {
	var auds []string
	for a := range strings.SplitSeq(getenv("IAP_AUDIENCE"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			auds = append(auds, a)
		}
	}
	v, err := iapauth.NewVerifier(iapauth.Config{
		Audiences: auds,
		JWKSURL:   getenv("IAP_JWKS_URL"),
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("configure IAP verification (IAP_AUDIENCE, IAP_JWKS_URL): %w", err)
	}

	app := http.NewServeMux()
	app.HandleFunc("GET /{$}", hello)
	fwd, err := forwarder(getenv("FORWARD_URL"))
	if err != nil {
		return nil, err
	}
	app.Handle("/forward/", http.StripPrefix("/forward", fwd))

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	root.Handle("/", iapauth.Middleware(v)(app))
	return root, nil
}

func hello(w http.ResponseWriter, r *http.Request) {
	id, ok := iapauth.FromContext(r.Context())
	if !ok { // unreachable behind Middleware; fail closed anyway
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	who := id.Email
	if who == "" {
		who = id.Subject
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "hello %s\n", who)
}

// forwarder proxies to base. Its transport drops X-Serverless-Authorization,
// which Cloud Run passed to us with its signature stripped.
func forwarder(base string) (http.Handler, error) {
	if base == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "forwarding not configured (FORWARD_URL)", http.StatusServiceUnavailable)
		}), nil
	}
	target, err := url.Parse(base)
	if err != nil || target.Host == "" || (target.Scheme != "http" && target.Scheme != "https") {
		return nil, fmt.Errorf("FORWARD_URL %q is not an absolute http(s) URL", base)
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: iapauth.StripServerlessAuthorization(http.DefaultTransport),
	}, nil
}
