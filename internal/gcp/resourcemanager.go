package gcp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	resourcemanager "cloud.google.com/go/resourcemanager/apiv3"
	"cloud.google.com/go/resourcemanager/apiv3/resourcemanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

// DefaultProjectPageSize is the page size ProjectDirectory asks
// SearchProjects for.
const DefaultProjectPageSize = 500

// ProjectDirectory lists projects through Cloud Resource Manager v3
// (gRPC, cloud.google.com/go/resourcemanager/apiv3): the same code against
// Google and the emulator, which serves the same API. It implements
// iapsetup.ProjectLister, for enumerating a scope with patterns or "*".
//
// Only the operator tool uses it (iapctl audit/enforce/replay
// --all-projects); the function never lists projects, so its custom role
// does not need Resource Manager permissions.
type ProjectDirectory struct {
	c *resourcemanager.ProjectsClient
	// PageSize is the page size asked of SearchProjects (default
	// DefaultProjectPageSize).
	PageSize int32
}

// NewProjectDirectory builds a Resource Manager client with opts as
// NewClients reads them: EmulatorHost (or IAPGUARD_EMULATOR_HOST) points it
// at the emulator with no authentication and Principal as the caller;
// otherwise Google Cloud with Application Default Credentials and
// ClientOptions. Close it when done.
func NewProjectDirectory(ctx context.Context, opts Options) (*ProjectDirectory, error) {
	if opts.EmulatorHost == "" {
		opts.EmulatorHost = strings.TrimSpace(os.Getenv(EnvEmulatorHost))
	}
	var co []option.ClientOption
	if opts.UserAgent != "" {
		co = append(co, option.WithUserAgent(opts.UserAgent))
	}
	if host := opts.EmulatorHost; host != "" {
		if strings.Contains(host, "://") || strings.Contains(host, "/") {
			return nil, fmt.Errorf("emulator host %q: want host:port", host)
		}
		co = append(co,
			option.WithEndpoint(host),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithoutAuthentication(),
			option.WithTelemetryDisabled(),
		)
		if opts.Principal != "" {
			co = append(co, option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(principalInterceptor(opts.Principal))))
		}
	} else {
		co = append(co, opts.ClientOptions...)
	}
	c, err := resourcemanager.NewProjectsClient(ctx, co...)
	if err != nil {
		return nil, fmt.Errorf("creating Resource Manager client: %w", err)
	}
	return &ProjectDirectory{c: c, PageSize: DefaultProjectPageSize}, nil
}

// Close releases the client's connection.
func (d *ProjectDirectory) Close() error {
	if err := d.c.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("closing Resource Manager client: %w", err)
	}
	return nil
}

// ListProjects returns every ACTIVE project the caller can see, following
// every page of SearchProjects (query "state:ACTIVE"; ceil(N/PageSize)
// calls). Google returns only the projects the caller has
// resourcemanager.projects.get on, so a project missing here may still
// exist: iapsetup.Scope.Projects keeps explicit entries it does not find.
// Needs resourcemanager.projects.get on each project to be listed (no
// permission of its own).
func (d *ProjectDirectory) ListProjects(ctx context.Context) ([]iapsetup.ProjectInfo, error) {
	size := d.PageSize
	if size <= 0 {
		size = DefaultProjectPageSize
	}
	it := d.c.SearchProjects(ctx, &resourcemanagerpb.SearchProjectsRequest{Query: "state:ACTIVE", PageSize: size})
	var out []iapsetup.ProjectInfo
	for {
		p, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("searching projects (resourcemanager.projects.search): %w", err)
		}
		num, ok := strings.CutPrefix(p.GetName(), "projects/")
		if _, perr := strconv.ParseInt(num, 10, 64); !ok || perr != nil {
			num = "" // not projects/NUMBER: keep the id alone
		}
		out = append(out, iapsetup.ProjectInfo{ID: p.GetProjectId(), Number: num})
	}
}
