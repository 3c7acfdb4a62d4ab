package worker

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/mailmove/mailmove/internal/secret"
)

// Connection is how a process reaches Temporal, and the key file that
// seals (the CLI) and opens (the workers) the batch passwords: the
// --address, --namespace and --secret-key-file flags of mailmove and
// mailmove-worker, defined here once.
type Connection struct {
	Address       string
	Namespace     string
	SecretKeyFile string
}

// AddFlags defines the connection flags as persistent flags of root, with
// their defaults from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the secret
// package. Only the root of a command tree may own them: cobra panics on a
// flag defined twice in one tree, so NewCommand leaves them out.
func (c *Connection) AddFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&c.Address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	f.StringVar(&c.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	f.StringVar(&c.SecretKeyFile, "secret-key-file", secret.DefaultKeyFile(), "key that seals the batch passwords in the CLI and opens them in the workers: give both the same (or env "+secret.EnvKey+")")
}

// Dial connects to Temporal, logging the SDK's messages to logger. The
// caller closes the client. An unreachable server is an error wrapping
// *serviceerror.Unavailable.
func (c Connection) Dial(logger log.Logger) (client.Client, error) { return c.dial(logger, nil) }

// dial is Dial reporting the SDK's metrics to handler (nil: none).
func (c Connection) dial(logger log.Logger, handler client.MetricsHandler) (client.Client, error) {
	cl, err := client.Dial(client.Options{HostPort: c.Address, Namespace: c.Namespace, Logger: logger, MetricsHandler: handler})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w; is the server running? (`make dev-server` starts a local one)", c.Address, c.Namespace, err)
	}
	return cl, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
