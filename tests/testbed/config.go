package testbed

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// identity says which accounts the Dovecot processes run as.
type identity struct {
	Root         bool
	MailUID      int
	MailGID      int
	InternalUser string // auth, anvil, dict...
	// InternalGroup owns Dovecot's internal sockets; empty keeps the
	// default (the dovecot group).
	InternalGroup string
	LoginUser     string // imap-login
}

// currentIdentity picks the accounts: Dovecot refuses to run mail processes
// as uid 0, so as root mail belongs to the Debian "mail" user (uid 8) and the
// other services use the dovecot/dovenull users the package creates. Without
// root, everything runs as the current user.
func currentIdentity() (identity, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return identity{}, fmt.Errorf("look up current user: %w", err)
		}
		g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
		if err != nil {
			return identity{}, fmt.Errorf("look up current group: %w", err)
		}
		return identity{
			MailUID:       os.Geteuid(),
			MailGID:       os.Getegid(),
			InternalUser:  u.Username,
			InternalGroup: g.Name,
			LoginUser:     u.Username,
		}, nil
	}
	mail, err := user.Lookup("mail")
	if err != nil {
		return identity{}, fmt.Errorf("look up user mail: %w", err)
	}
	uid, _ := strconv.Atoi(mail.Uid)
	gid, _ := strconv.Atoi(mail.Gid)
	for _, name := range []string{"dovecot", "dovenull"} {
		if _, err := user.Lookup(name); err != nil {
			return identity{}, fmt.Errorf("look up user %s (created by dovecot-core): %w", name, err)
		}
	}
	return identity{Root: true, MailUID: uid, MailGID: gid, InternalUser: "dovecot", LoginUser: "dovenull"}, nil
}

var (
	nameRE       = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
	specialUseRE = regexp.MustCompile(`^\\[A-Za-z]+$`)
)

func validateOptions(opts *Options) error {
	if opts.Name == "" {
		opts.Name = "dovecot"
	}
	switch opts.Separator {
	case "":
		opts.Separator = DefaultSeparator
	case "/", ".":
	default:
		return fmt.Errorf("separator %q not supported: use \"/\" or \".\"", opts.Separator)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return fmt.Errorf("port %d out of range", opts.Port)
	}
	for _, u := range slices.Concat(opts.Users, opts.MasterUsers) {
		if err := validateUser(u); err != nil {
			return err
		}
	}
	if strings.ContainsAny(opts.OAuth2IntrospectionURL, " \t\r\n\"") {
		return fmt.Errorf("introspection URL %q not supported", opts.OAuth2IntrospectionURL)
	}
	for name, attr := range opts.SpecialUse {
		if name == "" || strings.ContainsAny(name, "\"\\\r\n") {
			return fmt.Errorf("special-use mailbox name %q not supported", name)
		}
		if !specialUseRE.MatchString(attr) {
			return fmt.Errorf("special-use attribute %q for %q must look like \\Sent", attr, name)
		}
	}
	return nil
}

func validateUser(u User) error {
	if u.Name == "" || strings.ContainsAny(u.Name, ":/ \t\r\n") {
		return fmt.Errorf("user name %q not supported", u.Name)
	}
	if strings.ContainsAny(u.Password, ":\r\n") {
		return fmt.Errorf("password of %s must not contain ':' or line breaks", u.Name)
	}
	return nil
}

func passwdLine(u User) string {
	// Dovecot lower-cases login names (auth_username_format = %Lu) before
	// the lookup.
	return strings.ToLower(u.Name) + ":{PLAIN}" + u.Password + "::::::\n"
}

// prepareDir creates the directory layout and the passwd-file.
func prepareDir(opts Options, id identity) (*Server, error) {
	dir := opts.Dir
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp(ScratchDir(), "testbed-"+nameRE.ReplaceAllString(opts.Name, "_")+"-")
	} else {
		dir, err = filepath.Abs(dir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create dovecot dir: %w", err)
	}
	if _, err := Attach(dir); err == nil {
		return nil, fmt.Errorf("dovecot dir %s already has a running instance", dir)
	}

	s := &Server{
		name:       opts.Name,
		dir:        dir,
		ownDir:     opts.Dir == "",
		sep:        opts.Separator,
		configPath: filepath.Join(dir, "dovecot.conf"),
		logPath:    filepath.Join(dir, "dovecot.log"),
		passwdPath: filepath.Join(dir, "passwd"),
		baseDir:    filepath.Join(dir, "run"),
		greeting:   fmt.Sprintf("Dovecot testbed %s ready (%s).", nameRE.ReplaceAllString(opts.Name, "_"), rand.Text()[:8]),
	}
	if len(s.baseDir) > maxSocketDir {
		if s.baseDir, err = os.MkdirTemp("", "testbed-run-"); err != nil {
			return nil, fmt.Errorf("create dovecot base_dir: %w", err)
		}
		// Unprivileged Dovecot processes connect to sockets in base_dir.
		if err := os.Chmod(s.baseDir, 0o755); err != nil {
			return nil, fmt.Errorf("create dovecot base_dir: %w", err)
		}
	}
	for _, d := range []string{"state", "mail", "public"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("create dovecot dir: %w", err)
		}
	}

	// Starting again on a directory keeps its users, like its mail.
	var passwd strings.Builder
	if old, err := os.ReadFile(s.passwdPath); err == nil {
		passwd.Write(old)
	}
	for _, u := range opts.Users {
		if !strings.Contains(passwd.String(), passwdLine(u)) {
			passwd.WriteString(passwdLine(u))
		}
	}
	// The auth process runs as the dovecot user and must read the file.
	if err := os.WriteFile(s.passwdPath, []byte(passwd.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write passwd-file: %w", err)
	}
	var masters strings.Builder
	for _, u := range opts.MasterUsers {
		masters.WriteString(passwdLine(u))
	}
	if err := os.WriteFile(filepath.Join(dir, "master-passwd"), []byte(masters.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write master passwd-file: %w", err)
	}
	if opts.OAuth2IntrospectionURL != "" {
		conf := "introspection_mode = post\nintrospection_url = " + opts.OAuth2IntrospectionURL +
			"\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
		if err := os.WriteFile(filepath.Join(dir, "oauth2.conf.ext"), []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("write oauth2 passdb settings: %w", err)
		}
	}

	if id.Root {
		for _, d := range []string{"mail", "public"} {
			if err := os.Chown(filepath.Join(dir, d), id.MailUID, id.MailGID); err != nil {
				return nil, fmt.Errorf("chown %s dir: %w", d, err)
			}
		}
		if err := makeTraversable(dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// makeTraversable adds o+x to dir and its ancestors: t.TempDir and
// os.MkdirTemp create 0700 directories, which the unprivileged Dovecot
// processes could not enter to reach the passwd-file and Maildirs.
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("make %s traversable: %w", dir, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("make %s traversable: %w", dir, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type specialUseBox struct {
	Name string
	Attr string
}

type configData struct {
	Instance     string
	Greeting     string
	Name         string
	BaseDir      string
	StateDir     string
	LogPath      string
	PasswdPath   string
	MailRoot     string
	Port         int
	Separator    string
	Prefix       string
	Identity     identity
	SpecialUse   []specialUseBox
	QuotaBytes   int64
	MaxMessage   int64
	Quota        bool // the quota plugins are loaded
	MaxUserConns int
	MasterPath   string // empty: no master users
	OAuth2Path   string // empty: no oauth2 passdb
	Compress     bool
	PublicPrefix string
	PublicDir    string
}

// configTemplate is a complete dovecot.conf for Dovecot 2.3; nothing is
// included from /etc/dovecot.
var configTemplate = template.Must(template.New("dovecot.conf").Parse(`# Generated by mailmove tests/testbed for instance {{printf "%q" .Name}}.
instance_name = {{.Instance}}
base_dir = {{.BaseDir}}
state_dir = {{.StateDir}}
log_path = {{.LogPath}}
log_timestamp = "%Y-%m-%d %H:%M:%S "
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login{{if .OAuth2Path}} xoauth2 oauthbearer{{end}}
# Failed logins answer at once; tests of bad credentials stay fast.
auth_failure_delay = 0
login_greeting = {{.Greeting}}
default_internal_user = {{.Identity.InternalUser}}
default_login_user = {{.Identity.LoginUser}}
{{- with .Identity.InternalGroup}}
default_internal_group = {{.}}
{{- end}}
first_valid_uid = {{.Identity.MailUID}}
last_valid_uid = 0
# Test data is disposable; skipping fsync makes seeding much faster.
mail_fsync = never
mail_location = maildir:~/Maildir
# Only Dovecot touches these Maildirs, so it need not rescan cur/ and new/
# on every APPEND; seeding a large folder is about 20% faster.
maildir_very_dirty_syncs = yes
{{- if .Quota}}
mail_plugins = $mail_plugins quota
{{- end}}

{{- with .MasterPath}}
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u {{.}}
}
{{- end}}
{{- with .OAuth2Path}}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {{.}}
}
{{- end}}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {{.PasswdPath}}
}
userdb {
  driver = static
  args = uid={{.Identity.MailUID}} gid={{.Identity.MailGID}} home={{.MailRoot}}/%u
}

protocol imap {
  mail_max_userip_connections = {{.MaxUserConns}}
{{- if .Quota}}
  mail_plugins = $mail_plugins imap_quota
{{- end}}
{{- if .Compress}}
  mail_plugins = $mail_plugins imap_zlib
{{- end}}
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = {{.Port}}
  }
  inet_listener imaps {
    port = 0
  }
{{- if not .Identity.Root}}
  chroot =
{{- end}}
}
# No auth penalty: after a test of bad credentials it would slow every later
# login from 127.0.0.1 by up to 15 seconds.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
{{- if not .Identity.Root}}
  chroot =
{{- end}}
}
{{- if not .Identity.Root}}
service imap-urlauth-login {
  chroot =
}
{{- end}}

namespace inbox {
  inbox = yes
  prefix = {{.Prefix}}
  separator = {{.Separator}}
{{- range .SpecialUse}}
  mailbox "{{.Name}}" {
    special_use = {{.Attr}}
    auto = subscribe
  }
{{- end}}
}
{{- if .PublicPrefix}}
namespace public {
  type = public
  separator = {{.Separator}}
  prefix = {{.PublicPrefix}}
  location = maildir:{{.PublicDir}}
  subscriptions = no
  list = children
}
{{- end}}
{{- if .Quota}}

plugin {
  quota = count:User quota
{{- if gt .QuotaBytes 0}}
  quota_rule = *:storage={{.QuotaBytes}}B
{{- end}}
{{- if gt .MaxMessage 0}}
  quota_max_mail_size = {{.MaxMessage}}B
{{- end}}
  quota_vsizes = yes
}
{{- end}}
`))

func (s *Server) writeConfig(opts Options, id identity) error {
	data := configData{
		Instance:     fmt.Sprintf("testbed-%s-%d", nameRE.ReplaceAllString(opts.Name, "_"), s.port),
		Name:         opts.Name,
		Greeting:     s.greeting,
		BaseDir:      s.baseDir,
		StateDir:     filepath.Join(s.dir, "state"),
		LogPath:      s.logPath,
		PasswdPath:   s.passwdPath,
		MailRoot:     filepath.Join(s.dir, "mail"),
		Port:         s.port,
		Separator:    s.sep,
		Prefix:       opts.Prefix,
		Identity:     id,
		QuotaBytes:   opts.QuotaBytes,
		MaxMessage:   opts.MaxMessageBytes,
		Quota:        opts.QuotaBytes > 0 || opts.MaxMessageBytes > 0,
		MaxUserConns: 50,
	}
	data.Compress = opts.Compress
	if opts.PublicPrefix != "" {
		data.PublicPrefix, data.PublicDir = opts.PublicPrefix, filepath.Join(s.dir, "public")
	}
	if len(opts.MasterUsers) > 0 {
		data.MasterPath = filepath.Join(s.dir, "master-passwd")
	}
	if opts.OAuth2IntrospectionURL != "" {
		data.OAuth2Path = filepath.Join(s.dir, "oauth2.conf.ext")
	}
	for name, attr := range opts.SpecialUse {
		data.SpecialUse = append(data.SpecialUse, specialUseBox{
			Name: strings.ReplaceAll(name, DefaultSeparator, s.sep),
			Attr: attr,
		})
	}
	slices.SortFunc(data.SpecialUse, func(a, b specialUseBox) int { return strings.Compare(a.Name, b.Name) })

	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, data); err != nil {
		return fmt.Errorf("render dovecot.conf: %w", err)
	}
	if err := os.WriteFile(s.configPath, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write dovecot.conf: %w", err)
	}
	return nil
}
