package engine

import (
	"reflect"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

// Add sums every counter: a field added to Counters without its line in
// Add fails here.
func TestCountersAddSumsEveryField(t *testing.T) {
	var one Counters
	v := reflect.ValueOf(&one).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			f.SetInt(1)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]BadItem{{Folder: "INBOX", UID: 1}}))
		case reflect.Map:
			switch f.Type().Key() {
			case reflect.TypeOf(""):
				f.Set(reflect.ValueOf(map[string]int{"$Label1": 1}))
			default:
				f.Set(reflect.ValueOf(map[failure.Side]time.Duration{failure.SideSource: 1}))
			}
		default:
			t.Fatalf("Counters.%s: a %s; teach this test and Add how to sum it", v.Type().Field(i).Name, f.Kind())
		}
	}
	var sum Counters
	sum.Add(one)
	if !reflect.DeepEqual(sum, one) {
		t.Fatalf("0 + one = %+v, want %+v: Add leaves a field out", sum, one)
	}
	sum.Add(one)
	if sum.Copied != 2 || len(sum.BadItems) != 1 || sum.RefusedKeywords["$Label1"] != 2 || sum.Throttled[failure.SideSource] != 2 {
		t.Fatalf("one + one = %+v; want every counter doubled and the one bad item counted once", sum)
	}
	sum.Add(Counters{BadItems: []BadItem{{Folder: "INBOX", UID: 2}}})
	if len(sum.BadItems) != 2 {
		t.Fatalf("another bad item was not added: %+v", sum.BadItems)
	}
	if c := one.Plus(one); c.Copied != 2 || one.Copied != 1 || one.RefusedKeywords["$Label1"] != 1 {
		t.Fatalf("Plus changed its operands: %+v, %+v", c, one)
	}
}
