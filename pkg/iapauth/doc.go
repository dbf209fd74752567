// Package iapauth lets a Go service that sits behind Identity-Aware Proxy
// (IAP) verify, on every request, that the request really came through IAP,
// and tells the handler who the user is.
//
// IAP signs each request it lets through with a short-lived ES256 JWT in the
// x-goog-iap-jwt-assertion header. Middleware verifies that assertion (the
// signature against IAP's published JWK set, issuer, audience, expiry and
// issue time with bounded clock skew) and stores the caller's Identity in the
// request context; requests without a valid assertion get 401. This is the
// "application code to verify that all requests have an identity" that
// Google lists as a prerequisite for securing Cloud Run with IAP, and the
// second line of defence if IAP is ever turned off or bypassed (for example
// through the run.app URL when IAP sits on a load balancer).
//
// Services that forward requests to another Cloud Run service must drop the
// X-Serverless-Authorization header IAP used to reach them (Cloud Run strips
// its signature, so forwarding it makes the next hop reject the call):
// StripServerlessAuthorization wraps an http.RoundTripper, and
// StripForwardHeaders serves httputil.ReverseProxy Rewrite/Director hooks.
//
// The expected audience depends on where IAP is enabled; see
// BackendServiceAudience, RegionalBackendServiceAudience and CloudRunAudience.
//
// Sources: "Securing your app with signed headers"
// (https://cloud.google.com/iap/docs/signed-headers-howto) for the header,
// algorithm, key URLs, issuer, audiences and the 30 s skew allowance;
// "Getting the user's identity" (https://cloud.google.com/iap/docs/identity-howto)
// for the accounts.google.com: namespace prefix; "Secure a Cloud Run service
// with IAP" for the X-Serverless-Authorization forwarding rule.
package iapauth
