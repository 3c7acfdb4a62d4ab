package engine

import (
	"context"
	"testing"

	"github.com/mailmove/mailmove/internal/failure"
	"github.com/mailmove/mailmove/tests/testbed"
)

// COMPRESS=DEFLATE (go-imap patch 7) against Dovecot's imap_zlib: a copy
// over deflated connections is exact, and moves fewer bytes on the wire.
func TestCompressedCopyIsExactAndSmaller(t *testing.T) {
	if err := testbed.EnsureDovecot(); err != nil {
		t.Fatal(err)
	}
	users := []testbed.User{{Name: testUser, Password: testPass}}
	srcSrv := testbed.StartForTest(t, testbed.Options{Name: "zsrc", Users: users, Compress: true})
	wire := map[bool]int64{}
	for _, compress := range []bool{false, true} {
		tgtSrv := testbed.StartForTest(t, testbed.Options{Name: "ztgt", Users: users, Compress: true})
		if !compress {
			if err := testbed.Seed(srcSrv.Addr(), testUser, testPass, testbed.SampleMailbox(31, 300)); err != nil {
				t.Fatal(err)
			}
		}
		open := func(side failure.Side, addr string) *Session {
			s, err := Dial(context.Background(), side, Endpoint{Addr: addr, Security: SecurityNone, Compress: compress}, Credentials{User: testUser, Password: testPass})
			if err != nil {
				t.Fatalf("Dial(compress %v) = %v", compress, err)
			}
			t.Cleanup(func() { s.Close() })
			if s.Compressed != compress {
				t.Fatalf("Compressed = %v, want %v (server caps %v)", s.Compressed, compress, s.Caps)
			}
			return s
		}
		src, tgt := open(failure.SideSource, srcSrv.Addr()), open(failure.SideTarget, tgtSrv.Addr())
		plans, _, err := Plan(context.Background(), src, tgt, Rules{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tgt.CreateFolders(context.Background(), plans); err != nil {
			t.Fatal(err)
		}
		for _, p := range plans {
			cur, _, err := SyncFolder(context.Background(), src, tgt, Cursor{Source: p.Source, Target: p.Target}, Options{})
			if err != nil || cur.LastUID == 0 && p.Messages > 0 {
				t.Fatalf("SyncFolder(%s, compress %v) = %v, cursor %+v", p.Source, compress, err, cur)
			}
		}
		wire[compress] = src.Bytes() + tgt.Bytes()
		a, err := testbed.TakeSnapshot(srcSrv.Addr(), testUser, testPass)
		if err != nil {
			t.Fatal(err)
		}
		b, err := testbed.TakeSnapshot(tgtSrv.Addr(), testUser, testPass)
		if err != nil {
			t.Fatal(err)
		}
		if d := testbed.Diff(a, b, nil); len(d) > 0 {
			t.Fatalf("compress %v: source and target differ: %v", compress, d)
		}
	}
	if wire[true] >= wire[false] {
		t.Fatalf("%d bytes on the wire compressed, %d without", wire[true], wire[false])
	}
	t.Logf("bytes on the wire: %d plain, %d deflated (%.0f%%)", wire[false], wire[true], 100*float64(wire[true])/float64(wire[false]))
}
