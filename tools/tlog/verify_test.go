package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func (l *testLog) verify(t *testing.T, args ...string) verifyResult {
	t.Helper()
	var r verifyResult
	raw := mustOK(t, &r, nil, append([]string{"verify", "--dir", l.dir, "--verifier", l.verifier}, args...)...)
	wantKeys(t, raw, "ok", "size", "root", "checkpoints")
	if !r.OK {
		t.Fatalf("ok=false: %s", raw)
	}
	return r
}

func (l *testLog) verifyFails(t *testing.T, reason string, args ...string) verifyRefusal {
	t.Helper()
	r := mustFail(t, 1, reason, nil, append([]string{"verify", "--dir", l.dir, "--verifier", l.verifier}, args...)...)
	wantKeys(t, r.stdout, "ok", "reason", "message")
	var out verifyRefusal
	if err := json.Unmarshal(r.stdout, &out); err != nil || out.OK || out.Reason != reason {
		t.Fatalf("refusal %s: %v", r.stdout, err)
	}
	return out
}

func writeCheckpoint(t *testing.T, cp string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(p, []byte(cp), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// grownLog has 600 entries (two full bundles, one partial, a level-1 tile) and the checkpoint
// files of its history.
func grownLog(t *testing.T) (*testLog, []string, []string) {
	l := newLog(t, "qubes.example/audit")
	var all, history []string
	for _, n := range []int{1, 9, 290, 300} {
		batch := entriesN(fmt.Sprintf("b%d", len(history)), n)
		r := l.append(t, batch...)
		all = append(all, batch...)
		history = append(history, writeCheckpoint(t, r.Checkpoint))
	}
	return l, all, history
}

func TestVerify(t *testing.T) {
	t.Parallel()
	l, all, history := grownLog(t)
	out := filepath.Join(t.TempDir(), "entries.jsonl")
	args := []string{"--entries-out", out}
	for _, h := range history {
		args = append(args, "--checkpoint", h)
	}
	r := l.verify(t, args...)
	if r.Size != 600 || len(r.Checkpoints) != 4 || r.Checkpoints[0].Size != 1 || r.Checkpoints[3].Size != 600 {
		t.Fatalf("%+v", r)
	}
	if want := referenceRoot(toBytes(all)); !bytes.Equal(r.Root, want) {
		t.Fatalf("root %x, want %x", r.Root, want)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for ; sc.Scan(); i++ {
		var e struct {
			Index uint64
			Entry []byte
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Index != uint64(i) || string(e.Entry) != all[i] {
			t.Fatalf("line %d %q: %v", i, sc.Text(), err)
		}
		wantKeys(t, sc.Bytes(), "index", "entry")
	}
	if i != len(all) {
		t.Fatalf("%d entries written, want %d", i, len(all))
	}
	// An empty log verifies too.
	empty := newLog(t, "qubes.example/empty")
	empty.append(t)
	if r := empty.verify(t); r.Size != 0 {
		t.Fatalf("%+v", r)
	}
}

func toBytes(s []string) [][]byte {
	b := make([][]byte, len(s))
	for i := range s {
		b[i] = []byte(s[i])
	}
	return b
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	t.Run("tampered entry bundle", func(t *testing.T) {
		l, _, _ := grownLog(t)
		flipByte(t, filepath.Join(l.dir, "tile/entries/000"), 10) // inside the first entry's data
		out := filepath.Join(t.TempDir(), "entries.jsonl")
		r := l.verifyFails(t, "root-mismatch", "--entries-out", out)
		if !strings.Contains(r.Message, "size 600") {
			t.Fatalf("message %q", r.Message)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("--entries-out written for a log that does not verify")
		}
	})
	t.Run("tampered level-0 tile", func(t *testing.T) {
		l, _, _ := grownLog(t)
		flipByte(t, filepath.Join(l.dir, "tile/0/001"), 100)
		r := l.verifyFails(t, "tile-mismatch")
		if !strings.Contains(r.Message, "tile/0/001") {
			t.Fatalf("message %q", r.Message)
		}
	})
	t.Run("tampered level-1 tile", func(t *testing.T) {
		l, _, _ := grownLog(t)
		flipByte(t, filepath.Join(l.dir, "tile/1/000.p/2"), -1)
		l.verifyFails(t, "tile-mismatch")
	})
	t.Run("truncated bundle", func(t *testing.T) {
		l, _, _ := grownLog(t)
		p := filepath.Join(l.dir, "tile/entries/002.p/88")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, b[:len(b)-3], 0o644)
		l.verifyFails(t, "malformed")
	})
	t.Run("missing bundle", func(t *testing.T) {
		l, _, _ := grownLog(t)
		if err := os.Remove(filepath.Join(l.dir, "tile/entries/001")); err != nil {
			t.Fatal(err)
		}
		l.verifyFails(t, "missing-bundle")
	})
	t.Run("checkpoint of another key", func(t *testing.T) {
		l, _, _ := grownLog(t)
		other := newLog(t, "qubes.example/audit")
		r := other.append(t, "x")
		l.verifyFails(t, "unknown-signer", "--checkpoint", writeCheckpoint(t, r.Checkpoint))
		// The published checkpoint itself, checked against another key.
		other.dir = l.dir
		other.verifyFails(t, "unknown-signer")
	})
	t.Run("forged checkpoint signature", func(t *testing.T) {
		l, _, _ := grownLog(t)
		cp, _ := os.ReadFile(filepath.Join(l.dir, "checkpoint"))
		l.verifyFails(t, "bad-signature", "--checkpoint", writeCheckpoint(t, forgeSignature(t, string(cp))))
	})
	t.Run("historical checkpoint not consistent", func(t *testing.T) {
		a, b := forkedLogs(t)
		a.append(t, entriesN("more", 10)...)
		r := b.append(t) // b's checkpoint at size 7, signed by the same key
		v := a.verifyFails(t, "root-mismatch", "--checkpoint", writeCheckpoint(t, r.Checkpoint))
		if !strings.Contains(v.Message, "size 7") {
			t.Fatalf("message %q", v.Message)
		}
	})
	t.Run("two roots for one size", func(t *testing.T) {
		a, b := forkedLogs(t)
		r := b.append(t)
		a.verifyFails(t, "root-mismatch", "--checkpoint", writeCheckpoint(t, r.Checkpoint))
	})
	t.Run("usage", func(t *testing.T) {
		mustFail(t, 2, "bad-key", nil, "verify", "--dir", t.TempDir(), "--verifier", "x+y+z")
		mustFail(t, 2, "usage", nil, "verify", "--dir", t.TempDir())
	})
}
