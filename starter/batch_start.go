package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mailmove/mailmove/internal/csvbatch"
	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/internal/policy"
	"github.com/mailmove/mailmove/internal/profile"
	"github.com/mailmove/mailmove/internal/secret"
	"github.com/mailmove/mailmove/internal/window"
	"github.com/mailmove/mailmove/workflows"
)

type batchStartOptions struct {
	Client func() (client.Client, error)
	Key    func(create bool) (*secret.Key, error)
	Out    io.Writer
	ErrOut io.Writer

	Name               string
	CSV                string
	Source, Target     sideOptions
	InsecureSkipVerify bool // deprecated: both sides
	Complete           string
	Concurrency        int
	PolicyFile         string
	ProfilesFile       string
	Exclude            []string
	IncludeOnly        []string
	Renames            []string
	MaxMessageSize     string
	NewerThan          string
	OlderThan          string
	DryRun             bool
	JSON               bool
	StartAfter         string
	Window, WindowZone string
	LogonAttempts      int
	LogonRetryInterval time.Duration
	Settings           workflows.Settings
	// FolderConcurrencyUsed: Settings.ConnectionsPerMove came from the
	// deprecated --folder-concurrency, which its errors then name.
	FolderConcurrencyUsed bool
	// SourceLimits and TargetLimits hold across all workers and batches
	// (--source-max-connections, --source-connection-rate, the target's
	// likewise, and the side's --X-profile's per-user cap); a side's go to
	// its endpoint's limiter only when one of its flags was given
	// (SourceLimitsSet), and replace what the limiter had.
	SourceLimits, TargetLimits       workflows.EndpointLimits
	SourceLimitsSet, TargetLimitsSet bool
}

// newCmdBatchStart builds `batch start`; runF, when set, replaces the run
// (tests use it to see the parsed options).
func newCmdBatchStart(f *factory, runF func(*batchStartOptions) error) *cobra.Command {
	opts := &batchStartOptions{Client: f.Client, Key: f.Key, Out: f.Out, ErrOut: f.ErrOut}
	cmd := &cobra.Command{
		Use:   "start --name NAME --csv FILE --source HOST:PORT --target HOST:PORT",
		Short: "Start a batch of moves from a CSV file (EmailAddress,UserName,Password[,TargetUserName,TargetPassword])",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.FolderConcurrencyUsed = cmd.Flags().Changed("folder-concurrency")
			opts.SourceLimitsSet = cmd.Flags().Changed("source-max-connections") || cmd.Flags().Changed("source-connection-rate")
			opts.TargetLimitsSet = cmd.Flags().Changed("target-max-connections") || cmd.Flags().Changed("target-connection-rate")
			if runF != nil {
				return runF(opts)
			}
			return batchStartRun(cmd.Context(), opts)
		},
	}
	addBatchStartFlags(cmd, opts)
	for _, n := range []string{"name", "csv", "source", "target"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func addBatchStartFlags(cmd *cobra.Command, opts *batchStartOptions) {
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "batch name (unique; names the moves' workflow IDs)")
	f.StringVar(&opts.CSV, "csv", "", "CSV file of mailboxes")
	opts.Source.name, opts.Target.name = "source", "target"
	opts.Source.addFlags(f)
	opts.Target.addFlags(f)
	f.BoolVar(&opts.InsecureSkipVerify, "insecure-skip-verify", false, "")
	f.MarkDeprecated("insecure-skip-verify", "use --source-insecure-skip-verify and --target-insecure-skip-verify")
	f.StringVar(&opts.Complete, "complete", "auto", "auto: finish each move after its initial sync; manual: keep syncing until `batch complete`")
	f.IntVar(&opts.Concurrency, "concurrency", workflows.DefaultConcurrency, "moves copying at once (initial sync, incremental and final passes, copying again after a wait); batch set changes it")
	f.DurationVar(&opts.Settings.IncrementalInterval, "incremental-interval", workflows.DefaultIncrementalInterval, "time between incremental passes (manual completion)")
	f.StringArrayVar(&opts.Exclude, "exclude-folder", nil, "leave out source folders: a name, a glob, or Name/* for a folder and its subfolders (repeat)")
	f.StringArrayVar(&opts.IncludeOnly, "include-folder", nil, "copy only these source folders (patterns as --exclude-folder; repeat)")
	f.StringArrayVar(&opts.Renames, "rename-folder", nil, `put a source folder, and its subfolders, elsewhere on the target: "Sent Items=Sent" (repeat)`)
	f.StringVar(&opts.Settings.Rules.TargetPrefix, "target-prefix", "", `put every folder below this target folder, e.g. "Migrated"`)
	f.BoolVar(&opts.Settings.Rules.IncludeShared, "include-shared", false, "copy the source's shared and other users' folders too (its NAMESPACE says which), each under its own path")
	f.StringVar(&opts.Settings.Rules.GmailLabels, "gmail-labels", workflows.GmailLabelFolders,
		"from a Gmail source, a message with several labels goes into the folder of each label (folders), or only into the folder of its first label by --gmail-label-order, its other labels kept as keywords (priority)")
	f.StringSliceVar(&opts.Settings.Rules.GmailLabelOrder, "gmail-label-order", nil,
		`with --gmail-labels priority: labels in order, first wins, e.g. "Clients/*,Work,INBOX" (folder paths or patterns as --exclude-folder; INBOX, Sent, Drafts, Trash, Spam for Gmail's own); others follow: Trash and Spam, your labels by name, INBOX, Sent, Drafts`)
	f.StringVar(&opts.MaxMessageSize, "max-message-size", "", "skip larger messages, e.g. 25MB")
	f.StringVar(&opts.NewerThan, "newer-than", "", "copy only messages received on or after this date (YYYY-MM-DD)")
	f.StringVar(&opts.OlderThan, "older-than", "", `copy only messages received before this date (YYYY-MM-DD) or age ("90d"): a staged migration's first batch; the second, without it, copies the rest (docs/batches.md)`)
	f.StringVar(&opts.StartAfter, "start-after", "", `start no move before this time: "19:00" (today, or tomorrow once past), "2026-12-05 19:00" (local time) or RFC 3339`)
	f.StringVar(&opts.Window, "window", "", `copy only in these hours, e.g. "Mon-Fri 19:00-07:00, Sat/Sun 00:00-24:00"; outside them moves stop at a safe point, holding no connection`)
	f.StringVar(&opts.WindowZone, "window-zone", "", "time zone of --window, an IANA name such as Europe/Berlin (default: this machine's, from TZ or /etc/localtime, else UTC)")
	f.BoolVar(&opts.JSON, "json", false, "print what was started (with --dry-run: the plans and the estimate) as JSON")
	f.BoolVar(&opts.DryRun, "dry-run", false, "have the workers log on to both sides and print each mailbox's folder plan and counts; copy nothing, start no move")
	f.StringVar(&opts.PolicyFile, "policy", "", "YAML or JSON failure policy over the defaults (docs/failure-policy.md)")
	f.StringVar(&opts.ProfilesFile, "profiles", "", "YAML or JSON file changing provider profiles' limits (docs/providers.md)")
	f.IntVar(&opts.LogonAttempts, "logon-attempts", 0, "logon attempts before a move fails (overrides the policy; 0: the policy's, 5 by default)")
	f.DurationVar(&opts.LogonRetryInterval, "logon-retry-interval", 0, "first wait between logon attempts, doubling up to 5m (overrides the policy; 0: the policy's, 30s by default)")
	f.IntVar(&opts.Settings.ConnectionsPerMove, "connections-per-move", workflows.DefaultConnectionsPerMove, "connections one move holds to each server: folders copied at once, and pairs lent to a large folder")
	f.IntVar(&opts.Settings.ConnectionsPerMove, "folder-concurrency", workflows.DefaultConnectionsPerMove, "")
	f.MarkDeprecated("folder-concurrency", "use --connections-per-move")
	f.BoolVar(&opts.Settings.PropagateDeletes, "propagate-deletes", false, "expunge from the target what users expunge from the source during the move")
	f.IntVar(&opts.Settings.ChunkMessages, "chunk-messages", workflows.DefaultChunkMessages, "messages one activity copies before it reports progress to the workflow")
	f.DurationVar(&opts.Settings.HeartbeatTimeout, "heartbeat-timeout", workflows.DefaultHeartbeatTimeout, "how soon a copy on a dead worker is resumed elsewhere")
	for _, side := range []struct {
		name string
		l    *workflows.EndpointLimits
	}{{"source", &opts.SourceLimits}, {"target", &opts.TargetLimits}} {
		f.IntVar(&side.l.MaxConnections, side.name+"-max-connections", 0,
			"connections open to the "+side.name+" server at most, across all workers and every batch naming it; the latest batch start that sets its limits wins (0: no cap; docs/limits.md)")
		f.Float64Var(&side.l.ConnectionRate, side.name+"-connection-rate", 0,
			"new connections per second to the "+side.name+" server at most, across all workers, evenly spaced: a ramp-up that firewalls' flood protection accepts (0: no cap)")
	}
}

// batchInput validates the options and reads the CSV; it does no network
// I/O. Its errors name the flag to fix.
func batchInput(opts *batchStartOptions, key *secret.Key) (workflows.BatchInput, error) {
	src, tgt, err := endpoints(opts)
	if err != nil {
		return workflows.BatchInput{}, err
	}
	if err := settings(opts); err != nil {
		return workflows.BatchInput{}, err
	}
	if err := endpointLimits(opts); err != nil {
		return workflows.BatchInput{}, err
	}
	srcAcc, tgtAcc := workflows.Account{Endpoint: src}, workflows.Account{Endpoint: tgt}
	if err := opts.Source.logon(key, &srcAcc); err != nil {
		return workflows.BatchInput{}, err
	}
	if err := opts.Target.logon(key, &tgtAcc); err != nil {
		return workflows.BatchInput{}, err
	}
	rows, err := readCSV(opts.CSV, csvbatch.Passwords{Source: opts.Source.needsPassword(), Target: opts.Target.needsPassword(),
		Hint: " (or log on with --source-admin/--target-admin or --source-token-command/--target-token-command)",
		Auth: func(col, value string) error {
			if col == "SourceAuth" {
				return opts.Source.rowAuth(col, value)
			}
			return opts.Target.rowAuth(col, value)
		}})
	if err != nil {
		return workflows.BatchInput{}, err
	}
	in := workflows.BatchInput{Name: opts.Name, Concurrency: opts.Concurrency, Source: srcAcc.Endpoint, Target: tgtAcc.Endpoint}
	if opts.StartAfter != "" {
		if in.StartAfter, err = parseTime("--start-after", opts.StartAfter, time.Now()); err != nil {
			return workflows.BatchInput{}, err
		}
	}
	if opts.Window != "" {
		in.Window, in.WindowZone = opts.Window, cmp.Or(opts.WindowZone, localZone())
		if _, err := window.Parse(in.Window, in.WindowZone); err != nil {
			return workflows.BatchInput{}, fmt.Errorf("--window %q (zone %s): %w", in.Window, in.WindowZone, err)
		}
	}
	tmpl := workflows.MailboxMoveInput{Batch: opts.Name, Settings: opts.Settings, Source: srcAcc, Target: tgtAcc}
	in.Moves, err = movesFromRows(rows, tmpl, key, opts.Source.needsPassword(), opts.Target.needsPassword())
	if err != nil {
		return in, err
	}
	return in, nil
}

// endpoints are the source and target servers of every move.
func endpoints(opts *batchStartOptions) (src, tgt workflows.Endpoint, err error) {
	if src, err = opts.Source.endpoint(opts.InsecureSkipVerify); err != nil {
		return src, tgt, err
	}
	tgt, err = opts.Target.endpoint(opts.InsecureSkipVerify)
	return src, tgt, err
}

// endpointLimits checks the limits across workers and adds the per-user
// cap of the side's named profile (a detected one is known only at logon;
// each move keeps within it on its own).
func endpointLimits(opts *batchStartOptions) error {
	for _, s := range []struct {
		name    string
		l       *workflows.EndpointLimits
		profile string
	}{{"source", &opts.SourceLimits, opts.Source.Profile}, {"target", &opts.TargetLimits, opts.Target.Profile}} {
		switch {
		case s.l.MaxConnections < 0:
			return fmt.Errorf("--%s-max-connections %d: write 1 or more, or 0 for no cap", s.name, s.l.MaxConnections)
		case s.l.ConnectionRate < 0:
			return fmt.Errorf("--%s-connection-rate %g: write a rate above 0, e.g. 2, or 0 for no cap", s.name, s.l.ConnectionRate)
		}
		if s.profile != "" {
			s.l.ConnectionsPerUser = profile.Resolve(s.profile, opts.Settings.Profiles).ConnectionsPerUser
		}
	}
	return nil
}

// setEndpointLimits gives each side's limits, where its flags were set,
// to its endpoint's limiter, starting it if needed: the latest setting for
// an endpoint wins, for every batch naming it.
func setEndpointLimits(ctx context.Context, c client.Client, opts *batchStartOptions, out io.Writer) error {
	src, tgt, err := endpoints(opts)
	if err != nil {
		return err
	}
	for _, s := range []struct {
		side, addr string
		set        bool
		l          workflows.EndpointLimits
	}{{"source", src.Addr, opts.SourceLimitsSet, opts.SourceLimits}, {"target", tgt.Addr, opts.TargetLimitsSet, opts.TargetLimits}} {
		if !s.set {
			continue
		}
		id := workflows.EndpointWorkflowID(s.side, s.addr)
		if _, err := c.SignalWithStartWorkflow(ctx, id, workflows.SignalEndpointLimits, s.l,
			client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
			workflows.EndpointLimiter, workflows.EndpointLimiterInput{Side: s.side, Addr: s.addr, Limits: s.l}); err != nil {
			return fmt.Errorf("set the limits of %s %s: %w", s.side, s.addr, err)
		}
		fmt.Fprintf(out, "Limits of %s %s across all workers: %s\n", s.side, s.addr, limitsText(s.l))
	}
	return nil
}

// limitsText says an endpoint's limits for a person.
func limitsText(l workflows.EndpointLimits) string {
	var parts []string
	if l.MaxConnections > 0 {
		parts = append(parts, fmt.Sprintf("%d connections at most", l.MaxConnections))
	}
	if l.ConnectionRate > 0 {
		parts = append(parts, fmt.Sprintf("%g new per second", l.ConnectionRate))
	}
	if l.ConnectionsPerUser > 0 {
		parts = append(parts, fmt.Sprintf("%d per user", l.ConnectionsPerUser))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// settings checks the flags that tune the moves and puts them, the rules
// and the failure policy into opts.Settings.
func settings(opts *batchStartOptions) error {
	switch workflows.CompleteMode(opts.Complete) {
	case workflows.CompleteAuto, workflows.CompleteManual:
		opts.Settings.Complete = workflows.CompleteMode(opts.Complete)
	default:
		return fmt.Errorf("--complete %q: use auto or manual", opts.Complete)
	}
	if err := checkNumbers(opts); err != nil {
		return err
	}
	if err := parseRules(opts); err != nil {
		return err
	}
	if err := parseProfiles(opts); err != nil {
		return err
	}
	return parsePolicy(opts)
}

// parseProfiles checks --source-profile/--target-profile and reads
// --profiles.
func parseProfiles(opts *batchStartOptions) error {
	for _, o := range []*sideOptions{&opts.Source, &opts.Target} {
		if _, ok := profile.Lookup(o.Profile); o.Profile != "" && !ok {
			return fmt.Errorf("--%s-profile %q: use one of %s, or leave it out to detect it at logon", o.name, o.Profile, strings.Join(profile.Names(), ", "))
		}
	}
	opts.Settings.SourceProfile, opts.Settings.TargetProfile = opts.Source.Profile, opts.Target.Profile
	if opts.ProfilesFile == "" {
		return nil
	}
	m, err := profile.Load(opts.ProfilesFile)
	opts.Settings.Profiles = m
	return err
}

// checkNumbers rejects the counts and durations no move can run with. Zero
// means the default only where the flag's help says so.
func checkNumbers(opts *batchStartOptions) error {
	s := &opts.Settings
	conns := "--connections-per-move"
	if opts.FolderConcurrencyUsed {
		conns = "--folder-concurrency"
	}
	for _, c := range []struct {
		flag   string
		n, min int
		zeroIs string
	}{
		{"--concurrency", opts.Concurrency, 1, ""},
		{conns, s.ConnectionsPerMove, 1, ""},
		{"--chunk-messages", s.ChunkMessages, 1, ""},
		{"--logon-attempts", opts.LogonAttempts, 0, "the policy's"},
	} {
		if c.n < c.min || c.n == 0 && c.zeroIs == "" {
			return fmt.Errorf("%s %d: must be at least 1%s", c.flag, c.n, orZero(c.zeroIs))
		}
	}
	for _, d := range []struct {
		flag   string
		d      time.Duration
		zeroIs string
	}{
		{"--incremental-interval", s.IncrementalInterval, ""},
		{"--heartbeat-timeout", s.HeartbeatTimeout, ""},
		{"--logon-retry-interval", opts.LogonRetryInterval, "the policy's"},
	} {
		if d.d < 0 || d.d == 0 && d.zeroIs == "" {
			return fmt.Errorf("%s %s: must be a duration above zero, e.g. 1m%s", d.flag, d.d, orZero(d.zeroIs))
		}
	}
	return nil
}

func orZero(meaning string) string {
	if meaning == "" {
		return ""
	}
	return ", or 0 for " + meaning
}

// parsePolicy loads --policy over the defaults and applies the logon flags.
func parsePolicy(opts *batchStartOptions) error {
	pol := policy.Default()
	if opts.PolicyFile != "" {
		var err error
		if pol, err = policy.Load(opts.PolicyFile); err != nil {
			return err
		}
	}
	logon := pol.Rule(failure.TypeLogonFailed)
	if opts.LogonAttempts > 0 {
		logon.MaximumAttempts = opts.LogonAttempts
	}
	if opts.LogonRetryInterval > 0 {
		logon.InitialInterval = failure.Duration(opts.LogonRetryInterval)
		if logon.MaximumInterval < logon.InitialInterval {
			logon.MaximumInterval = logon.InitialInterval
		}
	}
	pol.Rules[failure.TypeLogonFailed] = logon
	opts.Settings.Policy = &pol
	return nil
}

// readCSV reads the rows of a --csv file.
func readCSV(file string, need csvbatch.Passwords) ([]csvbatch.Row, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--csv: %w", err)
	}
	defer f.Close()
	rows, err := csvbatch.Parse(f, need)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return rows, nil
}

// parseRules turns the folder and message rule flags into Settings.Rules.
func parseRules(opts *batchStartOptions) error {
	r := &opts.Settings.Rules
	r.Exclude, r.IncludeOnly = opts.Exclude, opts.IncludeOnly
	for _, rn := range opts.Renames {
		from, to, ok := strings.Cut(rn, "=")
		if !ok {
			return fmt.Errorf(`--rename-folder %q: write SOURCE=TARGET, e.g. "Sent Items=Sent"`, rn)
		}
		if r.Renames == nil {
			r.Renames = map[string]string{}
		}
		r.Renames[strings.TrimSpace(from)] = strings.TrimSpace(to)
	}
	if opts.MaxMessageSize != "" {
		n, err := parseSize(opts.MaxMessageSize)
		if err != nil {
			return fmt.Errorf("--max-message-size: %w", err)
		}
		r.MaxMessageSize = n
	}
	if opts.NewerThan != "" {
		d, err := time.Parse("2006-01-02", opts.NewerThan)
		if err != nil {
			return fmt.Errorf("--newer-than %q: write a date as YYYY-MM-DD", opts.NewerThan)
		}
		r.NewerThan = d
	}
	if opts.OlderThan != "" {
		d, err := parseAge(opts.OlderThan, time.Now())
		if err != nil {
			return fmt.Errorf("--older-than %q: %w", opts.OlderThan, err)
		}
		r.OlderThan = d
	}
	switch {
	case r.GmailLabels != workflows.GmailLabelFolders && r.GmailLabels != workflows.GmailLabelPriority:
		return fmt.Errorf("--gmail-labels %q: use %s (a copy in the folder of each label) or %s (one copy, the other labels as keywords)",
			r.GmailLabels, workflows.GmailLabelFolders, workflows.GmailLabelPriority)
	case len(r.GmailLabelOrder) > 0 && r.GmailLabels != workflows.GmailLabelPriority:
		return errors.New("--gmail-label-order orders labels for --gmail-labels priority: add that, or leave the order out")
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("folder rules: %w", err)
	}
	return nil
}

// localZone is this machine's IANA time zone name: TZ, or where
// /etc/localtime points; UTC when neither says.
func localZone() string {
	if tz := strings.TrimPrefix(os.Getenv("TZ"), ":"); tz != "" {
		return tz
	}
	if target, err := os.Readlink("/etc/localtime"); err == nil {
		if _, name, ok := strings.Cut(target, "zoneinfo/"); ok {
			return name
		}
	}
	return "UTC"
}

// parseTime reads a time flag (--start-after, --after): a clock time today
// (tomorrow once it has passed), a local date and time, or RFC 3339.
func parseTime(flag, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02 15:04", s, now.Location()); err == nil {
		return t, nil
	}
	if c, err := time.ParseInLocation("15:04", s, now.Location()); err == nil {
		t := time.Date(now.Year(), now.Month(), now.Day(), c.Hour(), c.Minute(), 0, 0, now.Location())
		if !t.After(now) {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf(`%s %q: write "19:00", "2026-12-05 19:00" (local time) or RFC 3339 ("2026-12-05T19:00:00+01:00")`, flag, s)
}

// parseSize reads 25MB, 512KB, 1GB or a number of bytes.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"G", 1 << 30}, {"MB", 1 << 20}, {"M", 1 << 20}, {"KB", 1 << 10}, {"K", 1 << 10}, {"B", 1}}
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, x := range units {
		if strings.HasSuffix(u, x.suffix) {
			u, mult = strings.TrimSpace(strings.TrimSuffix(u, x.suffix)), x.mult
			break
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size: write e.g. 25MB", s)
	}
	return n * mult, nil
}

// batchStartRun starts the Batch workflow, or with --dry-run the DryRun
// workflow, whose plans it prints.
func batchStartRun(ctx context.Context, opts *batchStartOptions) error {
	key, err := opts.Key(true)
	if err != nil {
		return err
	}
	in, err := batchInput(opts, key)
	if err != nil {
		return usageError(err)
	}
	c, err := opts.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	text := opts.Out
	if opts.JSON {
		text = io.Discard
	}
	if err := setEndpointLimits(ctx, c, opts, text); err != nil {
		return err
	}
	if opts.DryRun {
		return dryRun(ctx, c, in, opts)
	}
	if err := checkBatchSize(0, len(in.Moves)); err != nil {
		return usageError(fmt.Errorf("--csv %s: %w", opts.CSV, err))
	}
	// The batch gets the first page of mailboxes' names, then the others;
	// the moves start once it knows them all, so it never ends early.
	moves, names := in.Moves, mailboxes(in.Moves)
	in.Moves, in.Gated, in.Mailboxes = nil, true, names[:min(len(names), namesPerSignal)]
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    workflows.BatchWorkflowID(opts.Name),
		TaskQueue:             workflows.TaskQueue,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// Without this the SDK quietly hands back the existing batch.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(workflows.SearchAttrBatch.ValueSet(opts.Name)),
	}, workflows.Batch, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return fmt.Errorf("batch %q already exists: its moves are not started twice. If its start was cut off, `mailmove batch add %s --csv %s` "+
			"starts the moves it had not started; for another batch, pick another --name", opts.Name, opts.Name, opts.CSV)
	}
	if err != nil {
		return fmt.Errorf("start batch: %w", err)
	}
	// With --json, the lines for a person give way to one JSON object.
	fmt.Fprintf(text, "Started batch %s: %d mailboxes, %d at a time (workflow %s, run %s)\n", opts.Name, len(moves), in.Concurrency, run.GetID(), run.GetRunID())
	if err := registerMoves(ctx, c, opts.Name, names[len(in.Mailboxes):]); err != nil {
		return fmt.Errorf("%w\nThen start its moves with: mailmove batch add %s --csv %s", err, opts.Name, opts.CSV)
	}
	nStarted, nAlready, err := startMoves(ctx, c, opts.Name, moves, opts.ErrOut)
	fmt.Fprintln(text, startedLine(nStarted, nAlready))
	if err != nil {
		return fmt.Errorf("%w\n(mailmove batch add %s --csv %s starts the moves not started yet)", err, opts.Name, opts.CSV)
	}
	if !in.StartAfter.IsZero() {
		fmt.Fprintf(text, "Its first move starts at %s\n", in.StartAfter.Local().Format("2006-01-02 15:04 MST"))
	}
	if in.Window != "" {
		fmt.Fprintf(text, "It copies only %s (%s)\n", in.Window, in.WindowZone)
	}
	fmt.Fprintf(text, "Watch it with: mailmove batch status %s --watch\n", opts.Name)
	if opts.JSON {
		return actionResult{Batch: opts.Name, Action: "start", Counts: map[string]int{"mailboxes": len(moves), "started": nStarted, "already there": nAlready},
			Summary: fmt.Sprintf("workflow %s, run %s", run.GetID(), run.GetRunID())}.print(opts.Out, true)
	}
	return nil
}

// parseAge reads a date (YYYY-MM-DD) or an age in days ("90d") before now,
// as a day's start in UTC.
func parseAge(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return time.Time{}, errors.New(`write a number of days, e.g. "90d", or a date as YYYY-MM-DD`)
		}
		y, m, d := now.UTC().AddDate(0, 0, -n).Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errors.New(`write a date as YYYY-MM-DD, or a number of days, e.g. "90d"`)
	}
	return d, nil
}
