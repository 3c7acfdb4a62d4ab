package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/profile"
	"github.com/mailmove/mailmove/internal/secret"
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
	Auth               string
	Admin              string
	AdminPasswordFile  string
	TokenCommand       string
	Profile            string
	Compress           bool
}

func (o *sideOptions) addFlags(f *pflag.FlagSet) {
	n := o.name
	f.StringVar(&o.Addr, n, "", n+" IMAP server host:port")
	f.StringVar(&o.Security, n+"-security", "tls", "tls (port 993), starttls (port 143) or none")
	f.StringVar(&o.CAFile, n+"-ca-file", "", "PEM file of the authority that signed the "+n+" server's certificate, besides the system's")
	f.BoolVar(&o.InsecureSkipVerify, n+"-insecure-skip-verify", false, "accept any certificate from the "+n+" server (self-signed test servers)")
	f.StringVar(&o.MinTLS, n+"-min-tls", "1.2", "oldest TLS version accepted from the "+n+" server: 1.2 or 1.3, or 1.0 or 1.1 for old servers (insecure)")
	f.StringVar(&o.Auth, n+"-auth", "", "how to log on to the "+n+": "+strings.Join(workflows.AuthMechanisms, ", ")+
		" (default: AUTHENTICATE PLAIN where offered, else LOGIN; xoauth2 with --"+n+"-token-command)")
	f.StringVar(&o.Admin, n+"-admin", "", "log on to every "+n+" mailbox as this admin (SASL PLAIN with the CSV's user name as authorization identity: "+
		"Dovecot master users, Exchange, Zimbra and Cyrus proxy logons); the CSV's passwords may then be empty")
	f.StringVar(&o.AdminPasswordFile, n+"-admin-password-file", "", "file holding the "+n+" admin's password (or env "+o.adminPasswordEnv()+")")
	f.BoolVar(&o.Compress, n+"-compress", false, "deflate the connections to the "+n+" where it offers COMPRESS=DEFLATE (slow links; costs CPU)")
	f.StringVar(&o.Profile, n+"-profile", "", "the "+n+" provider's limits to obey (connections per user, message size, daily transfer budget): "+
		strings.Join(profile.Names(), ", ")+" (default: detected at logon; numbers changed by --profiles)")
	f.StringVar(&o.TokenCommand, n+"-token-command", "", "command the workers run for an OAuth2 access token, with MAILMOVE_USER set to the user name "+
		"(Microsoft 365, Google: docs/oauth2.md); it prints the token or a token response's JSON")
}

func (o *sideOptions) adminPasswordEnv() string {
	return "MAILMOVE_" + strings.ToUpper(o.name) + "_ADMIN_PASSWORD"
}

// needsPassword reports whether the side logs on with the CSV's passwords.
func (o *sideOptions) needsPassword() bool { return o.Admin == "" && o.TokenCommand == "" }

// logon checks the logon flags and seals their secrets into tmpl, the
// side's account without its user, its Endpoint set: each secret is bound
// to it (the token command to no user, the admin's password to the admin).
func (o *sideOptions) logon(key *secret.Key, tmpl *workflows.Account) error {
	n := o.name
	if o.Auth != "" && !slices.Contains(workflows.AuthMechanisms, o.Auth) {
		return fmt.Errorf("--%s-auth %q: use one of %s", n, o.Auth, strings.Join(workflows.AuthMechanisms, ", "))
	}
	oauth := o.Auth == "xoauth2" || o.Auth == "oauthbearer"
	switch {
	case o.Admin != "" && o.TokenCommand != "":
		return fmt.Errorf("--%s-admin and --%s-token-command: choose one way to log on", n, n)
	case oauth && o.TokenCommand == "":
		return fmt.Errorf("--%s-auth %s needs --%s-token-command, the command that prints an access token", n, o.Auth, n)
	case o.TokenCommand != "" && o.Auth != "" && !oauth:
		return fmt.Errorf("--%s-auth %s: a token logs on with xoauth2 or oauthbearer", n, o.Auth)
	}
	tmpl.Auth, tmpl.Admin = o.Auth, o.Admin
	var err error
	if o.TokenCommand != "" {
		tmpl.TokenCommand, err = key.SealFor(tmpl.Endpoint.SecretBinding(o.side(), secret.UseTokenCommand, ""), o.TokenCommand)
		return err
	}
	if o.Admin == "" {
		return nil
	}
	pw := os.Getenv(o.adminPasswordEnv())
	if o.AdminPasswordFile != "" {
		b, err := os.ReadFile(o.AdminPasswordFile)
		if err != nil {
			return fmt.Errorf("--%s-admin-password-file: %w", n, err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	}
	if pw == "" {
		return fmt.Errorf("--%s-admin %s needs the admin's password: --%s-admin-password-file FILE or %s", n, o.Admin, n, o.adminPasswordEnv())
	}
	tmpl.AdminPassword, err = key.SealFor(tmpl.Endpoint.SecretBinding(o.side(), secret.UseAdminPassword, o.Admin), pw)
	return err
}

// side is the side these flags are of, as secrets are bound to it.
func (o *sideOptions) side() failure.Side { return failure.Side(o.name) }

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
	ep := workflows.Endpoint{Addr: o.Addr, Security: sec, InsecureSkipVerify: o.InsecureSkipVerify || skipVerify, Compress: o.Compress}
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

// rowAuth checks a CSV row's own mechanism (column col) against how the
// side logs on: tokens with xoauth2 or oauthbearer, an admin with plain,
// a password with login or plain.
func (o *sideOptions) rowAuth(col, value string) error {
	allowed := []string{"login", "plain"}
	how := "a password"
	switch {
	case o.TokenCommand != "":
		allowed, how = []string{"xoauth2", "oauthbearer"}, "--"+o.name+"-token-command"
	case o.Admin != "":
		allowed, how = []string{"plain"}, "--"+o.name+"-admin"
	}
	if !slices.Contains(allowed, value) {
		return fmt.Errorf("%s %q: the %s logs on with %s here, so use %s", col, value, o.name, how, strings.Join(allowed, " or "))
	}
	return nil
}
