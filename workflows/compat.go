package workflows

import "encoding/json"

// UnmarshalJSON reads a MoveState, also as runs continued as new before the
// counters had one type wrote it (MessagesCopied for Copied, and so on):
// such a state arrives as the input of the next run.
func (s *MoveState) UnmarshalJSON(b []byte) error {
	type plain MoveState // without this method
	var v struct {
		*plain
		MessagesCopied, MessagesMatched, MessagesFiltered *int
		BytesCopied                                       *int64
	}
	v.plain = (*plain)(s)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	for _, f := range []struct {
		old *int
		now *int
	}{{v.MessagesCopied, &s.Copied}, {v.MessagesMatched, &s.Matched}, {v.MessagesFiltered, &s.Filtered}} {
		if f.old != nil {
			*f.now = *f.old
		}
	}
	if v.BytesCopied != nil {
		s.Bytes = *v.BytesCopied
	}
	return nil
}
