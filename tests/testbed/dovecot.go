// Package testbed runs real Dovecot IMAP servers on 127.0.0.1 for integration
// tests, `make demo` and CI, fills them with a deterministic sample corpus and
// compares mailboxes before and after a move.
//
// Every server is an independent Dovecot 2.3 master process with its own
// configuration, base_dir, state_dir, log file and Maildir tree under
// Options.Dir. It never reads /etc/dovecot and never touches a system Dovecot,
// so any number of instances can run side by side in parallel tests.
package testbed

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultSeparator is the hierarchy separator of a server started without
// Options.Separator, and the separator used by folder names in the corpus,
// in Snapshot keys and in Options.SpecialUse keys.
const DefaultSeparator = "/"

// dovecotBinary is where Debian's dovecot-core installs the master binary.
const dovecotBinary = "/usr/sbin/dovecot"

// stateFileName holds what Attach needs to find a running instance again
// from another process (testbed down).
const stateFileName = "testbed.json"

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	// maxSocketDir keeps base_dir short enough that the longest unix socket
	// Dovecot creates in it stays under the 108-byte sun_path limit.
	maxSocketDir = 80
	// portAttempts bounds the retries when a free port picked for Port 0 is
	// taken by a parallel test before Dovecot binds it.
	portAttempts = 5
)

// ErrNotRunning is returned by Attach when the directory holds no running
// instance.
var ErrNotRunning = errors.New("testbed: no running dovecot instance")

// User is a mail account on a test server. Name is the login (for example
// "alice@example.com"); Password is stored in clear text (PLAIN scheme).
type User struct {
	Name     string
	Password string
}

// Options configures one Dovecot instance. The zero value is usable: a
// temporary directory, a free port, "/" as separator, no users, no quota.
type Options struct {
	// Name identifies the instance in process titles and logs, e.g. "source".
	Name string
	// Dir holds configuration, log, passwd-file and Maildirs. It is created if
	// missing and left in place by Stop; starting again on it keeps the mail,
	// which lets tests restart a server mid-move. Empty means a new directory
	// under ScratchDir. As root, Dir and its ancestors get o+x so Dovecot's
	// unprivileged processes can reach it.
	Dir string
	// Port is the IMAP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Users are added to the passwd-file before start (a Dir started
	// before keeps its users); see Server.AddUser
	// for later additions.
	Users []User
	// Separator is the namespace hierarchy separator, "/" (default) or ".".
	// With Maildir++ storage the other character is not allowed in names.
	Separator string
	// Prefix is the personal namespace's prefix: "INBOX." makes a
	// Courier- or cPanel-style server (with Separator ".").
	Prefix string
	// SpecialUse maps a mailbox name ("/"-separated, like corpus names) to a
	// RFC 6154 attribute such as `\Sent`. Each one is configured with
	// auto = subscribe, so it exists in every account from the first login.
	SpecialUse map[string]string
	// QuotaBytes, when positive, enables the quota and imap_quota plugins
	// with this storage limit for every user.
	QuotaBytes int64
	// MaxMessageBytes, when positive, makes the server refuse to store a
	// larger message (quota_max_mail_size), as servers with a message size
	// limit do.
	MaxMessageBytes int64
	// MasterUsers may log on as any user with SASL PLAIN, the user being
	// the authorization identity and the credentials their own: Dovecot's
	// master users, the admin logon of on-premises migrations.
	MasterUsers []User
	// OAuth2IntrospectionURL, when set, lets users log on with XOAUTH2 and
	// OAUTHBEARER: Dovecot's oauth2 passdb POSTs each token to this URL
	// (RFC 7662 introspection) and accepts it when the answer says
	// "active": true and names the user in "username".
	OAuth2IntrospectionURL string
	// Compress offers COMPRESS=DEFLATE (RFC 4978, the imap_zlib plugin).
	Compress bool
	// PublicPrefix, when set, adds a public namespace with this prefix
	// ("Public/", with the separator): folders every user sees, which are
	// not theirs (NAMESPACE lists it as shared).
	PublicPrefix string

	// dieWithParent stops the instance when the starting process dies, so
	// that a test binary killed by a timeout leaves no Dovecot behind.
	dieWithParent bool
}

// StandardSpecialUse returns the usual special-use folders of a fresh
// account, named as in SampleMailbox.
func StandardSpecialUse() map[string]string {
	return map[string]string{
		"Archive": `\Archive`,
		"Drafts":  `\Drafts`,
		"Junk":    `\Junk`,
		"Sent":    `\Sent`,
		"Trash":   `\Trash`,
	}
}

// OutlookSpecialUse returns special-use folders named the way Microsoft
// servers name them, for targets whose special folders differ from the
// source's.
func OutlookSpecialUse() map[string]string {
	return map[string]string{
		"Archive":       `\Archive`,
		"Deleted Items": `\Trash`,
		"Drafts":        `\Drafts`,
		"Junk Email":    `\Junk`,
		"Sent Items":    `\Sent`,
	}
}

// OutlookName is the target folder a move from a StartPair source puts a
// source folder in: special folders take Microsoft's names.
func OutlookName(name string) string {
	switch name {
	case "Sent":
		return "Sent Items"
	case "Trash":
		return "Deleted Items"
	case "Junk":
		return "Junk Email"
	}
	return name
}

// Server is a running Dovecot instance. Its methods are safe for concurrent
// use.
type Server struct {
	name       string
	dir        string
	port       int
	sep        string
	configPath string
	logPath    string
	passwdPath string
	baseDir    string
	pid        int
	// greeting is unique to this start, so that a server already listening
	// on a fixed port is not mistaken for ours.
	greeting string
	// exited is closed once the master has been reaped; nil when the
	// process was started by another process and found through Attach.
	exited chan struct{}

	// ownDir: Start made dir itself (Options.Dir was empty), so Stop
	// removes it; a caller's directory is left for inspection.
	ownDir bool

	mu       sync.Mutex // serialises passwd-file appends
	stopOnce sync.Once
	stopErr  error
}

// instanceState is the JSON content of the state file.
type instanceState struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	Port      int    `json:"port"`
	Separator string `json:"separator"`
	Config    string `json:"config"`
	BaseDir   string `json:"base_dir"`
}

// installMu keeps parallel tests of one binary from running apt-get at once.
var installMu sync.Mutex

// EnsureDovecot makes sure the dovecot binary is installed, installing the
// Debian package dovecot-imapd with apt-get when it is not. Installing needs
// root and network access.
func EnsureDovecot() error {
	installMu.Lock()
	defer installMu.Unlock()
	if _, err := dovecotPath(); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("dovecot is not installed and installing it needs root: run apt-get install dovecot-imapd")
	}
	// Other test binaries may be installing at the same time; wait for
	// their dpkg lock instead of failing.
	steps := [][]string{
		{"apt-get", "-o", "DPkg::Lock::Timeout=300", "update"},
		{"apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "dovecot-imapd"},
	}
	for _, args := range steps {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("install dovecot: %s: %w\n%s", strings.Join(args, " "), err, lastLines(string(out), 20))
		}
	}
	if _, err := dovecotPath(); err != nil {
		return fmt.Errorf("install dovecot: %w", err)
	}
	return nil
}

// ScratchDir returns the parent of the directories Start and StartForTest
// create when Options.Dir is empty: $TESTBED_TMPDIR if set, else /dev/shm
// when it is a tmpfs with at least 1 GiB free, else os.TempDir(). Maildir
// creates several files per message, and on busy VM disks each creation
// can cost a millisecond, several times the rest of an APPEND.
func ScratchDir() string {
	if dir := os.Getenv("TESTBED_TMPDIR"); dir != "" {
		return dir
	}
	const (
		shm         = "/dev/shm"
		tmpfsMagic  = 0x01021994
		minFreeSize = 1 << 30
	)
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err != nil || uint64(st.Type) != tmpfsMagic ||
		uint64(st.Bavail)*uint64(st.Bsize) < minFreeSize || syscall.Access(shm, 2 /* W_OK */) != nil {
		return os.TempDir()
	}
	return shm
}

func dovecotPath() (string, error) {
	if _, err := os.Stat(dovecotBinary); err == nil {
		return dovecotBinary, nil
	}
	p, err := exec.LookPath("dovecot")
	if err != nil {
		return "", errors.New("dovecot binary not found in /usr/sbin or PATH")
	}
	return p, nil
}

// Start starts one Dovecot instance and returns once it sends its IMAP
// greeting. The caller must call Stop; the process outlives the caller
// otherwise (it runs in its own session so that `testbed up` can leave it
// behind on purpose).
func Start(opts Options) (*Server, error) {
	if err := validateOptions(&opts); err != nil {
		return nil, err
	}
	bin, err := dovecotPath()
	if err != nil {
		return nil, err
	}
	id, err := currentIdentity()
	if err != nil {
		return nil, err
	}
	s, err := prepareDir(opts, id)
	if err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.port = port
		if err := s.writeConfig(opts, id); err != nil {
			return nil, err
		}
		err = s.launch(bin, opts.dieWithParent)
		if err == nil {
			break
		}
		// Another process may grab a port between freePort and Dovecot's
		// bind; only then is a retry with a new port meaningful.
		if opts.Port != 0 || attempt == portAttempts || !strings.Contains(s.LogTail(), "Address already in use") {
			s.cleanupFiles()
			return nil, fmt.Errorf("start dovecot %q: %w\n%s", s.name, err, s.LogTail())
		}
	}

	if err := s.writeState(); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// StartForTest starts a server for the duration of a test: it installs
// Dovecot if needed, uses a new directory under ScratchDir (removed at the
// end) when opts.Dir is empty, stops the server in t.Cleanup (logging its log
// tail if the test failed) and calls t.Fatal on error.
func StartForTest(t testing.TB, opts Options) *Server {
	t.Helper()
	if err := EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp(ScratchDir(), "testbed-test-")
		if err != nil {
			t.Fatal(err)
		}
		// Registered before Stop's cleanup, so it runs after it.
		t.Cleanup(func() { os.RemoveAll(dir) })
		opts.Dir = dir
	}
	opts.dieWithParent = true
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot %q log tail:\n%s", s.name, s.LogTail())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop dovecot %q: %v", s.name, err)
		}
	})
	return s
}

// Attach finds the instance a previous Start left running in dir, typically
// from another process. It returns ErrNotRunning when there is none.
func Attach(dir string) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	var st instanceState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("attach %s: parse state: %w", dir, err)
	}
	s := &Server{
		name:       st.Name,
		dir:        dir,
		port:       st.Port,
		sep:        st.Separator,
		configPath: st.Config,
		logPath:    filepath.Join(dir, "dovecot.log"),
		passwdPath: filepath.Join(dir, "passwd"),
		baseDir:    st.BaseDir,
		pid:        st.PID,
	}
	// A recycled pid must not make us signal an unrelated process.
	if !processAlive(st.PID) || !bytes.Contains(processCmdline(st.PID), []byte(st.Config)) {
		s.cleanupFiles()
		return nil, ErrNotRunning
	}
	return s, nil
}

// Addr returns the IMAP address, "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the IMAP port.
func (s *Server) Port() int { return s.port }

// Name returns Options.Name.
func (s *Server) Name() string { return s.name }

// Dir returns the instance directory.
func (s *Server) Dir() string { return s.dir }

// Separator returns the namespace hierarchy separator.
func (s *Server) Separator() string { return s.sep }

// PID returns the pid of the Dovecot master process.
func (s *Server) PID() int { return s.pid }

// LogPath returns the path of the instance's log file.
func (s *Server) LogPath() string { return s.logPath }

// LogTail returns the last lines of the instance's log, for test failure
// messages.
func (s *Server) LogTail() string {
	const maxBytes = 16 << 10
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(fi.Size()-maxBytes, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	return lastLines(string(buf[:n]), 40)
}

// AddUser appends u to the passwd-file of the running server.
//
// Dovecot re-reads a changed passwd-file at most once per second, so AddUser
// returns only after the next second has begun: a login right after it
// would otherwise be refused if a lookup happened earlier in the same second.
func (s *Server) AddUser(u User) error {
	if err := validateUser(u); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.passwdPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("add user %s: %w", u.Name, err)
	}
	if _, err := f.WriteString(passwdLine(u)); err != nil {
		f.Close()
		return fmt.Errorf("add user %s: %w", u.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("add user %s: %w", u.Name, err)
	}
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
	return nil
}

// Stop shuts the instance down and waits until the master and every process
// it spawned are gone. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	if processAlive(s.pid) {
		if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop dovecot %q: %w", s.name, err)
		}
	}
	if !s.waitExit(stopTimeout) {
		// The master normally exits within a second; a hung one must not
		// leave a port and Maildirs locked for the next test.
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
		if !s.waitExit(stopTimeout) {
			return fmt.Errorf("stop dovecot %q: master pid %d did not exit", s.name, s.pid)
		}
	}
	// Children of the master (log, auth, imap...) share its session, which
	// Start created; any that outlive the master are stragglers.
	if err := killSession(s.pid, stopTimeout); err != nil {
		return fmt.Errorf("stop dovecot %q: %w", s.name, err)
	}
	s.cleanupFiles()
	return nil
}

func (s *Server) waitExit(timeout time.Duration) bool {
	if s.exited != nil {
		select {
		case <-s.exited:
			return true
		case <-time.After(timeout):
			return false
		}
	}
	deadline := time.Now().Add(timeout)
	for processAlive(s.pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// cleanupFiles removes what only matters while the instance runs; in a
// caller's directory the Maildirs and the log stay for inspection, a
// directory Start made is removed whole (it lives on tmpfs when it can).
func (s *Server) cleanupFiles() {
	os.Remove(filepath.Join(s.dir, stateFileName))
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
	if s.baseDir != "" && !strings.HasPrefix(s.baseDir, s.dir+string(filepath.Separator)) {
		os.RemoveAll(s.baseDir)
	}
}

// launch runs the master in the foreground of its own session and waits for
// the greeting.
func (s *Server) launch(bin string, dieWithParent bool) error {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-F", "-c", s.configPath)
	cmd.Dir = s.dir
	// Fatal start-up errors are printed before the log process exists.
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr(dieWithParent)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.exited = exited

	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.readGreeting(); err == nil {
			return nil
		}
		select {
		case <-exited:
			_ = killSession(s.pid, stopTimeout)
			return fmt.Errorf("dovecot exited during start-up (%v)", cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stop()
			return fmt.Errorf("no IMAP greeting on %s after %v", s.Addr(), startTimeout)
		}
	}
}

func (s *Server) readGreeting() error {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "* OK") || !strings.Contains(line, s.greeting) {
		return fmt.Errorf("greeting %q is not from this instance", line)
	}
	return nil
}

func (s *Server) writeState() error {
	b, err := json.MarshalIndent(instanceState{
		Name:      s.name,
		PID:       s.pid,
		Port:      s.port,
		Separator: s.sep,
		Config:    s.configPath,
		BaseDir:   s.baseDir,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, stateFileName), append(b, '\n'), 0o644)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartPair starts a source with the usual special folders and a target
// whose special folders have Microsoft's names, both with the same users,
// in directories of their own (removed by Stop). Stop both when done.
func StartPair(name string, users []User) (src, tgt *Server, err error) {
	src, err = Start(Options{Name: name + "-source", Users: users, SpecialUse: StandardSpecialUse()})
	if err != nil {
		return nil, nil, err
	}
	tgt, err = Start(Options{Name: name + "-target", Users: users, SpecialUse: OutlookSpecialUse()})
	if err != nil {
		src.Stop()
		return nil, nil, err
	}
	return src, tgt, nil
}
