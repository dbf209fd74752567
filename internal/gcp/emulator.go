package gcp

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/iapguard/iapguard/internal/envname"
)

// The one place where iapguard builds the client options that point Google
// clients at the emulator. Every client of the product (internal/gcp's, the
// function's Pub/Sub publisher, iapctl's Logging and Pub/Sub clients, the
// sandbox's demo clients) uses these. The variables' names are
// internal/envname's, which the emulator prints.

// The emulator's environment variables (internal/envname).
const (
	EnvEmulatorHost       = envname.EmulatorHost
	EnvPubSubEmulatorHost = envname.PubSubEmulatorHost
)

// Emulator caller-identity header and gRPC metadata key.
const (
	principalHeader   = "X-Emulator-Principal"
	principalMetadata = "x-emulator-principal"
)

// resolveEmulatorHost returns host, or IAPGUARD_EMULATOR_HOST when host is
// empty; "" means Google Cloud. A URL or a path is an error.
func resolveEmulatorHost(host string) (string, error) {
	host = cmp.Or(host, strings.TrimSpace(os.Getenv(EnvEmulatorHost)))
	if strings.Contains(host, "://") || strings.Contains(host, "/") {
		return "", fmt.Errorf("emulator host %q: want host:port", host)
	}
	return host, nil
}

// endpoints are the client options of one set of clients: gRPC clients,
// Compute's REST client and the REST clients served at the endpoint's root.
// closeIdle (emulator only) releases the REST clients' idle connections.
type endpoints struct {
	compute, root []option.ClientOption
	closeIdle     func()
}

// endpointsFor returns the client options for opts: the emulator at
// opts.EmulatorHost (or IAPGUARD_EMULATOR_HOST) with opts.Principal named
// as the caller, else Google Cloud with opts.ClientOptions; UserAgent in
// both.
func endpointsFor(opts Options) (endpoints, error) {
	host, err := resolveEmulatorHost(opts.EmulatorHost)
	if err != nil {
		return endpoints{}, err
	}
	var common []option.ClientOption
	if opts.UserAgent != "" {
		common = append(common, option.WithUserAgent(opts.UserAgent))
	}
	if host == "" {
		all := append(common, opts.ClientOptions...)
		return endpoints{compute: all, root: all}, nil
	}
	hc, closeIdle := emulatorHTTPClient(opts.Principal)
	return endpoints{
		compute:   append(slices.Clip(common), EmulatorRESTOptions(host, "compute/v1/", hc)...),
		root:      append(slices.Clip(common), EmulatorRESTOptions(host, "", hc)...),
		closeIdle: closeIdle,
	}, nil
}

// EmulatorGRPCOptions point a gRPC Google client (Cloud Run, Resource
// Manager, Pub/Sub, Logging, ...) at the emulator at host: plain-text
// transport, no credentials, no telemetry, and, when principal is not
// empty, principal named as the caller (metadata x-emulator-principal) so
// the emulator's audit entries name it.
func EmulatorGRPCOptions(host, principal string) []option.ClientOption {
	opts := []option.ClientOption{
		option.WithEndpoint(host),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
		option.WithTelemetryDisabled(),
	}
	if principal != "" {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(principalInterceptor(principal))))
	}
	return opts
}

// EmulatorRESTOptions point a REST Google client (google.golang.org/api/...)
// at the emulator at host, under path ("compute/v1/" for Compute, "" for
// the APIs served at the root: Service Usage, IAP), over plain http with no
// credentials. hc sends the requests (nil: Go's default client);
// emulatorHTTPClient builds one that names a principal.
func EmulatorRESTOptions(host, path string, hc *http.Client) []option.ClientOption {
	opts := []option.ClientOption{option.WithEndpoint("http://" + host + "/" + path)}
	if hc != nil {
		return append(opts, option.WithHTTPClient(hc))
	}
	return append(opts, option.WithoutAuthentication())
}

// emulatorHTTPClient is the HTTP client of REST clients against the
// emulator: calls multiplex over unencrypted HTTP/2, as they do over TLS
// with Google's front ends (HTTP/1.1 would open one connection per
// concurrent call), and name principal as the caller (header
// X-Emulator-Principal) when it is not empty. closeIdle releases its idle
// connections.
func emulatorHTTPClient(principal string) (hc *http.Client, closeIdle func()) {
	return EmulatorHTTPClient(principal)
}

// EmulatorHTTPClient is the HTTP client iapguard's REST clients use
// against iapguard's emulator (see emulatorHTTPClient), for clients built
// outside NewClients (the function's Pub/Sub publisher). closeIdle
// releases its idle connections.
func EmulatorHTTPClient(principal string) (hc *http.Client, closeIdle func()) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &principalTransport{principal: principal, base: tr}}, tr.CloseIdleConnections
}

func principalInterceptor(principal string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx = metadata.AppendToOutgoingContext(ctx, principalMetadata, principal)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// principalTransport adds the emulator's caller-identity header.
type principalTransport struct {
	principal string
	base      http.RoundTripper
}

func (t *principalTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.principal != "" {
		r = r.Clone(r.Context())
		r.Header.Set(principalHeader, t.principal)
	}
	return t.base.RoundTrip(r)
}
