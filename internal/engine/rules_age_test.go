package engine

import (
	"testing"
	"time"
)

func TestRulesOlderThanSkipsTheRecentMail(t *testing.T) {
	cut := time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
	r := Rules{OlderThan: cut}
	if r.Skips(10, cut.Add(-time.Second)) || !r.Skips(10, cut) || !r.Skips(10, cut.Add(time.Hour)) {
		t.Fatal("OlderThan must keep what is before it and skip the rest")
	}
	r.NewerThan = cut.AddDate(-1, 0, 0)
	if !r.Skips(10, r.NewerThan.Add(-time.Second)) || r.Skips(10, r.NewerThan) || r.Validate() != nil {
		t.Fatal("NewerThan and OlderThan together keep what is between them")
	}
	r.NewerThan = cut
	if err := r.Validate(); err == nil {
		t.Fatal("NewerThan at OlderThan: no message is both, want an error")
	}
}
