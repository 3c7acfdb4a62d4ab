package worker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"

	"github.com/mailmove/mailmove/internal/secret"
)

// Connection is how a process reaches Temporal, and the key file that
// seals (the CLI) and opens (the workers) the batch passwords: the
// connection flags of mailmove and mailmove-worker, defined here once.
//
// The cluster settings are the temporal CLI's: a profile of its TOML
// config file, then the TEMPORAL_* environment variables over it (both
// read by the SDK's envconfig package), then the flags given on the
// command line over both. A Connection built in code, without AddFlags,
// is used as it is: no profile, no environment.
type Connection struct {
	// Address is the frontend's host:port; Namespace the namespace.
	Address   string
	Namespace string
	// TLS turns TLS on, verifying the server against the system's roots.
	// The TLS paths, TLSServerName and APIKey turn it on too; with the flags,
	// --tls=false turns it off whatever the profile says.
	TLS bool
	// TLSCAPath is a PEM file of the authority that signed the server's
	// certificate, trusted instead of the system's roots.
	TLSCAPath string
	// TLSCertPath and TLSKeyPath are the client certificate and its key,
	// for a server that requires one (mTLS); one needs the other.
	TLSCertPath string
	TLSKeyPath  string
	// TLSServerName is the name the server's certificate must hold, when
	// it is not the host of Address.
	TLSServerName string
	// APIKey is sent as a bearer token (Temporal Cloud).
	APIKey string
	// Profile and ConfigFile choose the profile and its TOML file: empty,
	// TEMPORAL_PROFILE or "default", and TEMPORAL_CONFIG_FILE or
	// envconfig.DefaultConfigFilePath (~/.config/temporalio/temporal.toml).
	Profile    string
	ConfigFile string

	SecretKeyFile string

	// flags is where AddFlags defined the flags: only a flag set there
	// overrides the profile and the environment. nil: built in code.
	flags *pflag.FlagSet
	// env is the environment envconfig reads; nil: the process's.
	env envconfig.EnvLookup
}

// Connection flag names, the temporal CLI's.
const (
	flagAddress       = "address"
	flagNamespace     = "namespace"
	flagTLS           = "tls"
	flagTLSCAPath     = "tls-ca-path"
	flagTLSCertPath   = "tls-cert-path"
	flagTLSKeyPath    = "tls-key-path"
	flagTLSServerName = "tls-server-name"
	flagAPIKey        = "api-key"
	flagProfile       = "profile"
	flagConfigFile    = "config-file"
)

// Defaults of --address and --namespace, used when neither the profile
// nor the environment names them.
const (
	defaultAddress   = "127.0.0.1:7233"
	defaultNamespace = "default"
)

// AddFlags defines the connection flags as persistent flags of root. Only
// the root of a command tree may own them: cobra panics on a flag defined
// twice in one tree, so NewCommand leaves them out.
func (c *Connection) AddFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	c.flags = f
	f.StringVar(&c.Address, flagAddress, defaultAddress, "Temporal frontend host:port (or env TEMPORAL_ADDRESS, or the profile's address)")
	f.StringVar(&c.Namespace, flagNamespace, defaultNamespace, "Temporal namespace (or env TEMPORAL_NAMESPACE, or the profile's namespace)")
	f.BoolVar(&c.TLS, flagTLS, false, "connect with TLS; on by itself with any --tls-* flag or an API key, --tls=false turns it off (env TEMPORAL_TLS)")
	f.StringVar(&c.TLSCAPath, flagTLSCAPath, "", "PEM of the authority that signed the server's certificate, trusted instead of the system's roots (env TEMPORAL_TLS_SERVER_CA_CERT_PATH)")
	f.StringVar(&c.TLSCertPath, flagTLSCertPath, "", "client certificate (PEM) for a server that requires one; with --tls-key-path (env TEMPORAL_TLS_CLIENT_CERT_PATH)")
	f.StringVar(&c.TLSKeyPath, flagTLSKeyPath, "", "private key (PEM) of --tls-cert-path (env TEMPORAL_TLS_CLIENT_KEY_PATH)")
	f.StringVar(&c.TLSServerName, flagTLSServerName, "", "name the server's certificate must hold, when it is not the host of --address (env TEMPORAL_TLS_SERVER_NAME)")
	f.StringVar(&c.APIKey, flagAPIKey, "", "API key (Temporal Cloud); prefer env TEMPORAL_API_KEY or the profile, which other users cannot see in the process list")
	f.StringVar(&c.Profile, flagProfile, "", `profile of the config file to use (env TEMPORAL_PROFILE; default "default")`)
	f.StringVar(&c.ConfigFile, flagConfigFile, "", "TOML config file with the profiles, the temporal CLI's (env TEMPORAL_CONFIG_FILE; default "+defaultConfigFile()+")")
	f.StringVar(&c.SecretKeyFile, "secret-key-file", secret.DefaultKeyFile(), "key that seals the batch passwords in the CLI and opens them in the workers: give both the same (or env "+secret.EnvKey+")")
}

// ClientOptions resolves the connection as the temporal CLI does: the
// profile, the environment over it, the flags given over both. The
// result's HostPort and Namespace are the ones in force. A TLS file that
// cannot be read is an error naming where it was set (flag, variable or
// profile) and its path.
func (c Connection) ClientOptions() (client.Options, error) {
	prof, err := c.profile()
	if err != nil {
		return client.Options{}, err
	}
	if err := c.checkFiles(prof); err != nil {
		return client.Options{}, err
	}
	opts, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("connection settings for Temporal: %w", err)
	}
	return opts, nil
}

// profile is the envconfig profile with the flags applied over it, in the
// temporal CLI's way (cliext.ClientOptionsBuilder): --address and
// --namespace only when given or when nothing else names them, the TLS
// settings and the API key when not empty, --tls=false last.
func (c Connection) profile() (envconfig.ClientConfigProfile, error) {
	var prof envconfig.ClientConfigProfile
	if c.flags != nil {
		var err error
		prof, err = envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{
			ConfigFilePath:    c.ConfigFile,
			ConfigFileProfile: c.Profile,
			EnvLookup:         c.env,
		})
		if err != nil {
			return prof, fmt.Errorf("connection settings for Temporal (profile %s of %s): %w", c.profileName(), c.configFile(), err)
		}
	}
	if c.given(flagAddress) || prof.Address == "" {
		prof.Address = c.Address
	}
	if c.given(flagNamespace) || prof.Namespace == "" {
		prof.Namespace = c.Namespace
	}
	if c.APIKey != "" {
		prof.APIKey = c.APIKey
	}
	if c.TLS || c.TLSCAPath != "" || c.TLSCertPath != "" || c.TLSKeyPath != "" || c.TLSServerName != "" {
		if prof.TLS == nil {
			prof.TLS = &envconfig.ClientConfigTLS{}
		}
		// A flag turning TLS on also overrides a profile that turned it off.
		prof.TLS.Disabled = false
		set := func(dst *string, v string) {
			if v != "" {
				*dst = v
			}
		}
		set(&prof.TLS.ServerCACertPath, c.TLSCAPath)
		set(&prof.TLS.ClientCertPath, c.TLSCertPath)
		set(&prof.TLS.ClientKeyPath, c.TLSKeyPath)
		set(&prof.TLS.ServerName, c.TLSServerName)
	}
	if c.flags != nil && c.flags.Changed(flagTLS) && !c.TLS {
		prof.TLS = &envconfig.ClientConfigTLS{Disabled: true}
	}
	return prof, nil
}

// given reports whether the flag name was set on the command line (always,
// for a Connection built in code).
func (c Connection) given(name string) bool { return c.flags == nil || c.flags.Changed(name) }

// checkFiles reads the TLS files the profile names, so that one missing
// is reported with where it was set, not only as envconfig's "failed
// reading server CA cert path".
func (c Connection) checkFiles(prof envconfig.ClientConfigProfile) error {
	t := prof.TLS
	if t == nil || t.Disabled {
		return nil
	}
	files := []struct {
		path, flag, env, key string
		value                string
	}{
		{t.ServerCACertPath, flagTLSCAPath, "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "tls.server_ca_cert_path", c.TLSCAPath},
		{t.ClientCertPath, flagTLSCertPath, "TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.client_cert_path", c.TLSCertPath},
		{t.ClientKeyPath, flagTLSKeyPath, "TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.client_key_path", c.TLSKeyPath},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("%s %s: %w", c.origin(f.flag, f.env, f.key, f.value), f.path, err)
		}
	}
	cert, key := files[1], files[2]
	switch {
	case cert.path != "" && key.path == "" && len(t.ClientKeyData) == 0:
		return fmt.Errorf("%s %s: the client certificate needs its key: give --%s as well", c.origin(cert.flag, cert.env, cert.key, cert.value), cert.path, flagTLSKeyPath)
	case key.path != "" && cert.path == "" && len(t.ClientCertData) == 0:
		return fmt.Errorf("%s %s: the key needs its client certificate: give --%s as well", c.origin(key.flag, key.env, key.key, key.value), key.path, flagTLSCertPath)
	}
	return nil
}

// origin says where a setting came from: its flag, its environment
// variable, or the profile's key.
func (c Connection) origin(flag, env, key, value string) string {
	if value != "" && c.given(flag) {
		return "--" + flag
	}
	if v, ok := c.lookup().LookupEnv(env); ok && v != "" {
		return env
	}
	return fmt.Sprintf("%s of profile %s in %s", key, c.profileName(), c.configFile())
}

func (c Connection) lookup() envconfig.EnvLookup {
	if c.env == nil {
		return envconfig.EnvLookupOS
	}
	return c.env
}

// profileName is the profile envconfig reads.
func (c Connection) profileName() string {
	if c.Profile != "" {
		return c.Profile
	}
	if v, _ := c.lookup().LookupEnv("TEMPORAL_PROFILE"); v != "" {
		return v
	}
	return envconfig.DefaultConfigFileProfile
}

// configFile is the file envconfig reads.
func (c Connection) configFile() string {
	if c.ConfigFile != "" {
		return c.ConfigFile
	}
	if v, _ := c.lookup().LookupEnv("TEMPORAL_CONFIG_FILE"); v != "" {
		return v
	}
	return defaultConfigFile()
}

// defaultConfigFile is envconfig's default file, for help texts.
func defaultConfigFile() string {
	if p := envconfig.DefaultConfigFilePath(); p != "" {
		return p
	}
	return "$XDG_CONFIG_HOME/temporalio/temporal.toml"
}

// Dial connects to Temporal, logging the SDK's messages to logger. The
// caller closes the client. An unreachable server is an error wrapping
// *serviceerror.Unavailable, with a hint at what to check.
func (c Connection) Dial(logger log.Logger) (client.Client, error) {
	cl, _, err := c.dial(logger, nil)
	return cl, err
}

// dial is Dial reporting the SDK's metrics to handler (nil: none). It
// returns the options it dialed with: their HostPort and Namespace are
// the ones in force.
func (c Connection) dial(logger log.Logger, handler client.MetricsHandler) (client.Client, client.Options, error) {
	opts, err := c.ClientOptions()
	if err != nil {
		return nil, opts, err
	}
	opts.Logger, opts.MetricsHandler = logger, handler
	cl, err := client.Dial(opts)
	if err != nil {
		return nil, opts, fmt.Errorf("connect to Temporal at %s (namespace %s, %s): %w; %s", opts.HostPort, opts.Namespace, describeSecurity(opts), err, dialHint(opts, err))
	}
	return cl, opts, nil
}

// describeSecurity says how the connection was secured, for errors.
func describeSecurity(opts client.Options) string {
	t := opts.ConnectionOptions.TLS
	var parts []string
	switch {
	case t == nil && opts.Credentials != nil && !opts.ConnectionOptions.TLSDisabled:
		parts = append(parts, "TLS")
	case t == nil:
		parts = append(parts, "no TLS")
	case len(t.Certificates) > 0:
		parts = append(parts, "TLS with a client certificate")
	default:
		parts = append(parts, "TLS without a client certificate")
	}
	if opts.Credentials != nil {
		parts = append(parts, "API key")
	}
	return strings.Join(parts, ", ")
}

// dialHint says what to check after a failed dial, from the error's words.
func dialHint(opts client.Options, err error) string {
	t := opts.ConnectionOptions.TLS
	tlsOn := t != nil || (opts.Credentials != nil && !opts.ConnectionOptions.TLSDisabled)
	msg := err.Error()
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(msg, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("certificate required", "bad certificate") && (t == nil || len(t.Certificates) == 0):
		return "the server requires a client certificate: give --tls-cert-path and --tls-key-path (or TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH, or the profile's tls.client_cert_path and tls.client_key_path)"
	case has("certificate required", "bad certificate", "unknown certificate authority", "certificate revoked", "expired certificate", "unsupported certificate"):
		return "the server refused the client certificate: check that --tls-cert-path is signed by an authority the server trusts for clients, and has not expired"
	case has("certificate signed by unknown authority", "certificate is not trusted"):
		return "the server's certificate is not signed by an authority this machine trusts: give --tls-ca-path with the PEM of the one that signed it"
	case has("certificate is valid for", "certificate is not valid for any names", "doesn't contain any IP SANs"):
		return "the server's certificate does not hold the name dialed: give --tls-server-name with a name it holds"
	case has("certificate has expired", "is not yet valid"):
		return "the server's certificate has expired or is not yet valid: check the server's certificate and this machine's clock"
	case has("first record does not look like a TLS handshake"):
		return "the server does not speak TLS on this port: leave out the TLS settings, or give --tls=false"
	case has("Unauthenticated", "PermissionDenied", "Request unauthorized", "API key"):
		return "the server refused the credentials: check --api-key (or TEMPORAL_API_KEY, or the profile's api_key) and --namespace"
	// A TLS 1.3 client finishes its handshake before the server checks its
	// certificate: the server's refusal may come as a cut connection.
	case t != nil && len(t.Certificates) == 0 && has("broken pipe", "connection reset", "EOF"):
		return "the server closed the connection after the handshake: if it requires a client certificate, give --tls-cert-path and --tls-key-path (or TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH, or the profile's tls.client_cert_path and tls.client_key_path)"
	case t != nil && has("broken pipe", "connection reset", "EOF"):
		return "the server closed the connection after the handshake: check that --tls-cert-path is signed by an authority the server trusts for clients, and has not expired"
	case !tlsOn && has("connection refused"):
		return "is the server running? (`make dev-server` starts a local one)"
	case !tlsOn:
		return "is the server running, and does it need TLS? (`make dev-server` starts a local one; a cluster behind TLS needs --tls or a --tls-* flag, Temporal Cloud also --api-key or a client certificate)"
	default:
		return "is the server running at that address, and are the TLS settings right? (--tls-ca-path, --tls-server-name, --tls-cert-path and --tls-key-path)"
	}
}
