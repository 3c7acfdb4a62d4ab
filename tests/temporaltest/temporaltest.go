// Package temporaltest runs the pinned Temporal CLI dev server for tests: a
// real server on free loopback ports with a throw-away SQLite file and the
// mailmove search attributes registered.
package temporaltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.uber.org/zap"

	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/worker"
	"github.com/mailmove/mailmove/workflows"
)

// RepoRoot returns the directory holding go.mod, found upwards from the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary returns the temporal CLI: $TEMPORAL_BIN or bin/temporal, which
// `make bin/temporal` builds from the pinned version.
func Binary() (string, error) {
	if b := os.Getenv("TEMPORAL_BIN"); b != "" {
		return b, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	b := filepath.Join(root, "bin", "temporal")
	if _, err := os.Stat(b); err != nil {
		return "", fmt.Errorf("%s is missing: run `make bin/temporal` (it builds the pinned Temporal CLI, about 5 minutes once)", b)
	}
	return b, nil
}

// Server is a running dev server.
type Server struct {
	Addr       string
	bin        string
	args       []string
	dir        string
	namespaces []string
	cmd        *exec.Cmd
	done       chan struct{}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a headless dev server with the given extra namespaces and
// waits until it answers. Stop it with Stop.
func Start(dir string, namespaces ...string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--db-filename", filepath.Join(dir, "temporal.db"), "--log-level", "error"}
	for _, sa := range workflows.SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	for _, ns := range namespaces {
		args = append(args, "--namespace", ns)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), bin: bin, args: args, dir: dir, namespaces: namespaces}
	return s, s.start()
}

// Restart stops the server and starts it again on the same address and
// database, as an admin restarting Temporal under running moves does.
func (s *Server) Restart() error {
	s.Stop()
	// A dev server that exits at once is tried again: what the tests
	// restart Temporal for is the moves' side of it, not the dev
	// server's own start (it checks its ports free, and a port of the
	// old one may be held a moment by the host).
	var err error
	for i := 0; i < 3; i++ {
		if err = s.start(); err == nil || !errors.Is(err, errExited) {
			return err
		}
		fmt.Fprintf(os.Stderr, "temporaltest: restart %d: %v\n", i+1, err)
		time.Sleep(time.Second)
	}
	return err
}

// errExited: the dev server process ended before it answered.
var errExited = errors.New("temporal dev server exited")

func (s *Server) start() error {
	dir, namespaces := s.dir, s.namespaces
	cmd := exec.Command(s.bin, s.args...)
	log, err := os.OpenFile(filepath.Join(dir, "temporal.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { cmd.Wait(); log.Close(); close(done) }()

	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := client.Dial(client.Options{HostPort: s.Addr, Logger: QuietLogger()})
		if err == nil {
			_, err = c.CheckHealth(context.Background(), &client.CheckHealthRequest{})
			// Every namespace must have the search attributes before a
			// worker starts on it; a namespace made by --namespace may get
			// them from start-dev a little later, so make sure.
			for _, ns := range append([]string{"default"}, namespaces...) {
				if err == nil {
					err = worker.EnsureSearchAttributes(context.Background(), c, ns, true)
				}
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-done:
			// The log's end, in the error: the test's directory is gone
			// by the time anyone reads it.
			return fmt.Errorf("%w; %s ends:\n%s", errExited, filepath.Join(dir, "temporal.log"), logTail(filepath.Join(dir, "temporal.log"), 2000))
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("temporal dev server did not answer on %s within 90s: %v", s.Addr, err)
		}
	}
}

// StartForTest starts a dev server that the test's cleanup stops.
func StartForTest(t testing.TB, namespaces ...string) *Server {
	t.Helper()
	s, err := Start(t.TempDir(), namespaces...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Pid is the dev server's process ID, for measuring its CPU time.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop ends the server and waits for it.
func (s *Server) Stop() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// QuietLogger is an SDK logger that drops everything, for tests and tools
// whose output is their own.
func QuietLogger() log.Logger { return nopLogger{} }

type nopLogger struct{}

func (nopLogger) Debug(string, ...interface{}) {}
func (nopLogger) Info(string, ...interface{})  {}
func (nopLogger) Warn(string, ...interface{})  {}
func (nopLogger) Error(string, ...interface{}) {}

// Env is a dev server, a worker running in this process, a client, and the
// key the worker opens passwords with: what a program needs to run moves
// end to end without the CLI.
type Env struct {
	Server  *Server
	Client  client.Client
	Key     *secret.Key
	KeyFile string
	stop    context.CancelFunc
}

// StartEnv starts an Env with its files in dir; without inProcessWorker the
// caller runs its own workers (with KeyFile). Stop it with Stop.
func StartEnv(dir string, inProcessWorker bool) (*Env, error) {
	srv, err := Start(dir)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "secret.key")
	key, err := secret.Load(keyFile, true)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if inProcessWorker {
		go worker.Run(ctx, worker.Options{Connection: worker.Connection{Address: srv.Addr, Namespace: "default", SecretKeyFile: keyFile}, Logger: zap.NewNop()})
	}
	c, err := client.Dial(client.Options{HostPort: srv.Addr, Logger: QuietLogger()})
	if err != nil {
		cancel()
		srv.Stop()
		return nil, err
	}
	return &Env{Server: srv, Client: c, Key: key, KeyFile: keyFile, stop: cancel}, nil
}

// Stop stops the worker, the client and the server.
func (e *Env) Stop() {
	e.Client.Close()
	e.stop()
	e.Server.Stop()
}

// logTail is the last n bytes of the file at path, or why not.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
