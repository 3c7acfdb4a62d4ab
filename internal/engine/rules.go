package engine

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Rules are an admin's rules for the folders and messages of a batch. Folder
// names in rules are source paths with "/" between levels whatever the
// servers' separators, compared case-insensitively.
type Rules struct {
	// Exclude skips folders: a name, a glob ("Archive/20*"), or "Name/*" for
	// a folder and everything below it (as Microsoft's ExcludeFolders).
	Exclude []string `json:",omitempty"`
	// IncludeOnly, when set, copies only the folders it matches.
	IncludeOnly []string `json:",omitempty"`
	// Renames sends a source folder, and what is below it, to another
	// target path: "Sent Items" → "Sent". A rename wins over special-use
	// mapping.
	Renames map[string]string `json:",omitempty"`
	// TargetPrefix puts every folder, INBOX included, below this target
	// path ("Migrated"); special folders then keep their own names.
	TargetPrefix string `json:",omitempty"`
	// MaxMessageSize skips larger messages (0: no limit).
	MaxMessageSize int64 `json:",omitempty"`
	// NewerThan skips messages whose internal date is before it.
	NewerThan time.Time `json:",omitempty"`
	// OlderThan skips messages whose internal date is at or after it: the
	// first stage of a staged migration, which moves the history weeks
	// before the cutover (docs/batches.md).
	OlderThan time.Time `json:",omitempty"`
	// IncludeShared copies the source's shared and other users' folders
	// too (NAMESPACE: not the user's personal folders), each under its
	// own path; they are left out unless asked for.
	IncludeShared bool `json:",omitempty"`
	// GmailLabels is the rule for a Gmail source's messages with several
	// labels: GmailLabelFolders ("" too) or GmailLabelPriority, which
	// ranks labels by GmailLabelOrder (folder paths or patterns, as
	// Exclude; system labels by name: INBOX, Sent, Drafts, Trash, Spam).
	GmailLabels     string   `json:",omitempty"`
	GmailLabelOrder []string `json:",omitempty"`
}

// Validate checks patterns and renames.
func (r Rules) Validate() error {
	var errs []error
	for _, list := range [][]string{r.Exclude, r.IncludeOnly} {
		for _, p := range list {
			if _, err := path.Match(strings.ToLower(p), ""); err != nil || strings.TrimSpace(p) == "" {
				errs = append(errs, fmt.Errorf("folder pattern %q is not a valid pattern (use names, * and ?, and Name/* for a folder and its subfolders)", p))
			}
		}
	}
	for from, to := range r.Renames {
		if strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" {
			errs = append(errs, fmt.Errorf("rename %q=%q: both names are needed", from, to))
		}
	}
	if !r.NewerThan.IsZero() && !r.OlderThan.IsZero() && !r.NewerThan.Before(r.OlderThan) {
		errs = append(errs, fmt.Errorf("newer than %s and older than %s: no message is both", r.NewerThan.Format(time.DateOnly), r.OlderThan.Format(time.DateOnly)))
	}
	for _, p := range r.GmailLabelOrder {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil || strings.TrimSpace(p) == "" {
			errs = append(errs, fmt.Errorf("label %q of the Gmail label order is not a valid name or pattern", p))
		}
	}
	if err := validGmailRule(r.GmailLabels); err != nil {
		errs = append(errs, err)
	}
	if r.MaxMessageSize < 0 {
		errs = append(errs, errors.New("maximum message size must be positive"))
	}
	return errors.Join(errs...)
}

// matches reports whether a "/"-separated source path matches a pattern.
func matches(pattern, name string) bool {
	p, n := strings.ToLower(strings.Trim(pattern, "/")), strings.ToLower(name)
	if base, ok := strings.CutSuffix(p, "/*"); ok && (n == base || strings.HasPrefix(n, base+"/")) {
		return true
	}
	ok, _ := path.Match(p, n)
	return ok
}

func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if matches(p, name) {
			return true
		}
	}
	return false
}

// excluded reports whether the rules leave a source folder out.
func (r Rules) excluded(name string) bool {
	if len(r.IncludeOnly) > 0 && !matchesAny(r.IncludeOnly, name) {
		return true
	}
	return matchesAny(r.Exclude, name)
}

// renamed returns the "/"-separated target path a rename gives a source
// path, the longest matching rename winning.
func (r Rules) renamed(name string) (string, bool) {
	best, target := "", ""
	for from, to := range r.Renames {
		f := strings.Trim(from, "/")
		if strings.EqualFold(name, f) || len(name) > len(f) && strings.EqualFold(name[:len(f)+1], f+"/") {
			if len(f) > len(best) {
				best, target = f, strings.Trim(to, "/")+name[len(f):]
			}
		}
	}
	return target, best != ""
}

// skips reports whether a message is filtered out by size or date.
// Skips reports a message the size and date rules leave out.
func (r Rules) Skips(size int64, date time.Time) bool {
	return r.MaxMessageSize > 0 && size > r.MaxMessageSize || !r.NewerThan.IsZero() && date.Before(r.NewerThan) ||
		!r.OlderThan.IsZero() && !date.Before(r.OlderThan)
}
