package cli

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/api/googleapi"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/iapguard/iapguard/internal/gcperr"
)

// badRegion is the error for a --region the API refused.
func badRegion(region, where string, err error) error {
	return fmt.Errorf("--region %s is not a Cloud Run region %s accepts (want one such as us-central1 or europe-west1; it said: %s)", region, where, grpcDesc(err))
}

// rpcPrefix is how gRPC errors print their code; people get the words of
// codeWords instead.
var rpcPrefix = regexp.MustCompile(`rpc error: code = (\w+) desc = `)

var codeWords = map[string]string{
	"InvalidArgument": "refused as invalid: ", "NotFound": "not found: ", "PermissionDenied": "permission denied: ",
	"Unauthenticated": "not authenticated: ", "ResourceExhausted": "quota exhausted: ", "Unavailable": "unavailable: ",
	"DeadlineExceeded": "deadline exceeded: ", "FailedPrecondition": "failed precondition: ", "Aborted": "aborted: ",
	"AlreadyExists": "already exists: ", "Internal": "internal error: ", "Unknown": "", "Canceled": "cancelled: ",
	"Unimplemented": "not implemented: ", "OutOfRange": "out of range: ", "DataLoss": "data loss: ",
}

// plainRPC rewrites "rpc error: code = X desc = M" as words and M.
func plainRPC(msg string) string {
	return rpcPrefix.ReplaceAllStringFunc(msg, func(m string) string {
		code := rpcPrefix.FindStringSubmatch(m)[1]
		if w, ok := codeWords[code]; ok {
			return w
		}
		return code + ": "
	})
}

// grpcDesc returns the server's message of a gRPC or REST error without
// the "rpc error: code = X desc =" prefix.
func grpcDesc(err error) string {
	if ge, ok := errors.AsType[*googleapi.Error](err); ok && ge.Message != "" {
		return ge.Message
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		return msg[i+len("desc = "):]
	}
	return msg
}

// explain rewords the errors people meet first — no credentials, nothing
// listening, timeouts, rejected credentials — and keeps the rest.
func explain(err error, emulator string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find default credentials"):
		return fmt.Errorf("no Google Cloud credentials: run `gcloud auth application-default login` or set %s to a key file (to use the local emulator instead, set %s)",
			envCredentials, envEmulatorHost)
	case errors.Is(err, context.DeadlineExceeded) || gcperr.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("timed out waiting for %s (raise --timeout?): %v", endpointName(emulator), err)
	case gcperr.Code(err) == codes.Unavailable && emulator != "":
		return fmt.Errorf("cannot reach the emulator at %s (%s): %v; is `iapctl sandbox` still running?", emulator, envEmulatorHost, err)
	case gcperr.Code(err) == codes.Unauthenticated:
		return fmt.Errorf("credentials rejected by Google Cloud (run `gcloud auth application-default login`): %v", err)
	}
	return err
}

// oneLine makes err printable on one line: Main prints "iapctl: " + err.
func oneLine(err error) error {
	if err == nil {
		return nil
	}
	msg := plainRPC(strings.Join(strings.Fields(err.Error()), " "))
	return errors.New(msg)
}

// fail ends a command with exit status 1 and err on one line.
func fail(err error) error { return withCode(ExitError, oneLine(err)) }
