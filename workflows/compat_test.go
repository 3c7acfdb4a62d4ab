package workflows

import (
	"encoding/json"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
)

// A state continued as new by a worker from before the counters had one
// type keeps its counts.
func TestMoveStateReadsOldCounterNames(t *testing.T) {
	old := `{"Status":"Synced","MessagesCopied":7,"BytesCopied":700,"MessagesMatched":2,"MessagesFiltered":1,"FlagUpdates":3}`
	var st MoveState
	if err := json.Unmarshal([]byte(old), &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusSynced || st.Copied != 7 || st.Bytes != 700 || st.Matched != 2 || st.Filtered != 1 || st.FlagUpdates != 3 {
		t.Fatalf("decoded %+v", st)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var again MoveState
	if err := json.Unmarshal(b, &again); err != nil || again.Copied != 7 || again.Bytes != 700 {
		t.Fatalf("round trip %s = %+v, %v", b, again, err)
	}
}

// The waits of the failure table are the StatusDetail values the Web UI
// filters on.
func TestFailureWaitsAreStatusDetails(t *testing.T) {
	known := map[string]bool{DetailWaitingForLogonRetry: true, DetailRelinquishedLocked: true, DetailWaitingForQuota: true}
	for _, c := range failure.Classes(failure.KindActivity) {
		if c.Wait != "" && !known[c.Wait] {
			t.Errorf("class %s waits as %q, which is not a StatusDetail constant", c.Type, c.Wait)
		}
	}
}
