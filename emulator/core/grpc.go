package core

import (
	"context"
	"strings"

	"google.golang.org/grpc"
)

// MethodKey turns a gRPC full method ("/google.cloud.run.v2.Services/GetService")
// into the emulator's method key ("google.cloud.run.v2.Services.GetService").
func MethodKey(fullMethod string) string {
	return strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", ".")
}

// UnaryServerInterceptor applies Begin (accounting and faults) to every unary
// gRPC call, so gRPC surfaces never call Begin themselves.
func UnaryServerInterceptor(c *Core) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := c.Begin(ctx, MethodKey(info.FullMethod)); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor applies Begin to every streaming gRPC call.
func StreamServerInterceptor(c *Core) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := c.Begin(ss.Context(), MethodKey(info.FullMethod)); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
