// Package profile knows the limits IMAP providers put on one mailbox —
// connections, message size, bytes a day — so a move obeys them by
// construction instead of learning them when the provider suspends the
// account. A side's profile is named by the admin (--source-profile) or
// detected at logon; a batch's profile file may change any number.
package profile

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mailmove/mailmove/internal/failure"
)

// Limits are what a provider allows one user's mailbox. Zero is no limit.
type Limits struct {
	// ConnectionsPerUser caps the connections a move opens to the side.
	ConnectionsPerUser int `json:"connectionsPerUser,omitempty"`
	// MaxMessageBytes: larger messages are bad items on a target of this
	// profile, not sent (where the server does not announce APPENDLIMIT).
	MaxMessageBytes int64 `json:"maxMessageBytes,omitempty"`
	// DownloadBytesPerWindow and UploadBytesPerWindow bound the bytes a
	// move copies from (as source) and to (as target) the mailbox in each
	// Window; going over suspends the account at some providers.
	DownloadBytesPerWindow int64 `json:"downloadBytesPerWindow,omitempty"`
	UploadBytesPerWindow   int64 `json:"uploadBytesPerWindow,omitempty"`
	// Window is the budgets' period, a day unless a profile file says
	// otherwise.
	Window failure.Duration `json:"window,omitempty"`
}

// Profile is one provider's row.
type Profile struct {
	Name string
	Limits
	// Source is where the numbers come from.
	Source string
}

// Names of the built-in profiles.
const (
	Gmail     = "gmail"
	Office365 = "office365"
	Exchange  = "exchange"
	Dovecot   = "dovecot"
	Cyrus     = "cyrus"
	Courier   = "courier"
	Generic   = "generic"
)

const day = failure.Duration(24 * time.Hour)

// profiles is the one table of providers.
var profiles = []Profile{
	{Name: Gmail, Limits: Limits{ConnectionsPerUser: 15, DownloadBytesPerWindow: 2500 << 20, UploadBytesPerWindow: 500 << 20, Window: day},
		Source: "Google Workspace Admin Help, \"Gmail bandwidth limits\" (IMAP: 2,500 MB download, 500 MB upload per day; over it the account is suspended for up to 24 h) " +
			"and Gmail Help on IMAP errors (at most 15 simultaneous IMAP connections per account)"},
	{Name: Office365, Limits: Limits{ConnectionsPerUser: 8, MaxMessageBytes: 150 << 20, Window: day},
		Source: "Microsoft Learn, \"Exchange Online limits\" (message size at most 150 MB, 35 MB by default: lower it in a profile file to the tenant's MaxReceiveSize); " +
			"connections: Microsoft publishes no IMAP per-user figure, 8 is mailmove's conservative choice"},
	{Name: Exchange, Limits: Limits{ConnectionsPerUser: 16, Window: day},
		Source: "Microsoft Learn, Set-ImapSettings: MaxConnectionsPerUser defaults to 16"},
	{Name: Dovecot, Limits: Limits{ConnectionsPerUser: 10, Window: day},
		Source: "Dovecot documentation, mail_max_userip_connections: 10 by default (per user and client IP)"},
	{Name: Cyrus, Limits: Limits{Window: day},
		Source: "Cyrus IMAP imapd.conf: maxlogins_per_user is 0 (unlimited) by default"},
	{Name: Courier, Limits: Limits{ConnectionsPerUser: 4, Window: day},
		Source: "Courier-IMAP imapd configuration: MAXPERIP=4 by default (cPanel raises it)"},
	{Name: Generic, Limits: Limits{Window: day}, Source: "no known limits"},
}

// Names lists the built-in profiles, for flags and errors.
func Names() []string {
	var n []string
	for _, p := range profiles {
		n = append(n, p.Name)
	}
	return n
}

// Lookup returns the built-in profile name.
func Lookup(name string) (Profile, bool) {
	i := slices.IndexFunc(profiles, func(p Profile) bool { return p.Name == name })
	if i < 0 {
		return Profile{}, false
	}
	return profiles[i], true
}

// Resolve returns profile name with the batch's overrides applied over the
// built-in numbers (a field the file sets replaces the built-in one); an
// unknown name is Generic.
func Resolve(name string, overrides map[string]Limits) Profile {
	p, ok := Lookup(name)
	if !ok {
		p, _ = Lookup(Generic)
	}
	if o, ok := overrides[p.Name]; ok {
		if o.ConnectionsPerUser > 0 {
			p.ConnectionsPerUser = o.ConnectionsPerUser
		}
		if o.MaxMessageBytes > 0 {
			p.MaxMessageBytes = o.MaxMessageBytes
		}
		if o.DownloadBytesPerWindow > 0 {
			p.DownloadBytesPerWindow = o.DownloadBytesPerWindow
		}
		if o.UploadBytesPerWindow > 0 {
			p.UploadBytesPerWindow = o.UploadBytesPerWindow
		}
		if o.Window > 0 {
			p.Window = o.Window
		}
		p.Source += "; changed by the batch's profile file"
	}
	if p.Window <= 0 {
		p.Window = day
	}
	return p
}

// Detect names the profile of a server from what it shows at logon: its
// host name, its capabilities and the name its ID answer gives (RFC 2971;
// empty when it has none).
func Detect(host string, caps []string, idName string) string {
	host = strings.ToLower(host)
	id := strings.ToLower(idName)
	has := func(c string) bool {
		return slices.ContainsFunc(caps, func(x string) bool { return strings.EqualFold(x, c) })
	}
	switch {
	case has("X-GM-EXT-1") || strings.HasSuffix(host, ".gmail.com") || strings.Contains(id, "gimap"):
		return Gmail
	case strings.HasSuffix(host, ".office365.com") || strings.HasSuffix(host, ".outlook.com") || host == "outlook.office.com":
		return Office365
	case strings.Contains(id, "dovecot"):
		return Dovecot
	case strings.Contains(id, "cyrus"):
		return Cyrus
	case strings.Contains(id, "courier"):
		return Courier
	case strings.Contains(id, "exchange") || has("AUTH=NTLM") && has("AUTH=GSSAPI"):
		return Exchange
	}
	return Generic
}

// Load reads a YAML or JSON profile file: built-in profile names, each with
// the numbers to change, e.g.
//
//	gmail:
//	  downloadBytesPerWindow: 1000000000
//	office365:
//	  maxMessageBytes: 36700160
func Load(file string) (map[string]Limits, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--profiles: %w", err)
	}
	return Parse(data, file)
}

// Parse is Load on bytes; name is used in errors.
func Parse(data []byte, name string) (map[string]Limits, error) {
	var m map[string]Limits
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for n, l := range m {
		if _, ok := Lookup(n); !ok {
			return nil, fmt.Errorf("%s: unknown profile %q: use one of %s", name, n, strings.Join(Names(), ", "))
		}
		if l.ConnectionsPerUser < 0 || l.MaxMessageBytes < 0 || l.DownloadBytesPerWindow < 0 || l.UploadBytesPerWindow < 0 || l.Window < 0 {
			return nil, fmt.Errorf("%s: profile %s: numbers must not be negative", name, n)
		}
	}
	return m, nil
}
