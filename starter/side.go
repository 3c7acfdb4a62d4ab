package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mailmove/mailmove/workflows"
)

// sideOptions are the flags of one side of every move of a batch,
// --source-… or --target-….
type sideOptions struct {
	name               string // "source" or "target"
	Addr               string
	Security           string
	CAFile             string
	InsecureSkipVerify bool
	MinTLS             string
}

func (o *sideOptions) addFlags(f *pflag.FlagSet) {
	n := o.name
	f.StringVar(&o.Addr, n, "", n+" IMAP server host:port")
	f.StringVar(&o.Security, n+"-security", "tls", "tls (port 993), starttls (port 143) or none")
	f.StringVar(&o.CAFile, n+"-ca-file", "", "PEM file of the authority that signed the "+n+" server's certificate, besides the system's")
	f.BoolVar(&o.InsecureSkipVerify, n+"-insecure-skip-verify", false, "accept any certificate from the "+n+" server (self-signed test servers)")
	f.StringVar(&o.MinTLS, n+"-min-tls", "1.2", "oldest TLS version accepted from the "+n+" server: 1.2 or 1.3, or 1.0 or 1.1 for old servers (insecure)")
}

// endpoint checks the flags and reads the CA file: the workers get its
// certificates, not its path. skipVerify is the deprecated
// --insecure-skip-verify, for both sides.
func (o *sideOptions) endpoint(skipVerify bool) (workflows.Endpoint, error) {
	sec, err := workflows.ParseSecurity(o.Security)
	if err != nil {
		return workflows.Endpoint{}, fmt.Errorf("--%s-security: %w", o.name, err)
	}
	if _, ok := workflows.TLSVersions[o.MinTLS]; !ok {
		versions := make([]string, 0, len(workflows.TLSVersions))
		for v := range workflows.TLSVersions {
			versions = append(versions, v)
		}
		slices.Sort(versions)
		return workflows.Endpoint{}, fmt.Errorf("--%s-min-tls %q: use one of %s", o.name, o.MinTLS, strings.Join(versions, ", "))
	}
	ep := workflows.Endpoint{Addr: o.Addr, Security: sec, InsecureSkipVerify: o.InsecureSkipVerify || skipVerify}
	if o.MinTLS != "1.2" {
		ep.MinTLS = o.MinTLS
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return workflows.Endpoint{}, fmt.Errorf("--%s-ca-file: %w", o.name, err)
		}
		if !strings.Contains(string(pem), "-----BEGIN CERTIFICATE-----") {
			return workflows.Endpoint{}, fmt.Errorf("--%s-ca-file %s: no PEM certificate in it (a file that starts with -----BEGIN CERTIFICATE-----)", o.name, o.CAFile)
		}
		ep.CA = string(pem)
	}
	return ep, nil
}
