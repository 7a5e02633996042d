package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

type witnessEnv struct {
	state, verifier string
}

func newWitness(t *testing.T, l *testLog) *witnessEnv {
	return &witnessEnv{state: filepath.Join(t.TempDir(), "witness-state"), verifier: l.verifier}
}

func (w *witnessEnv) accept(t *testing.T, req []byte) witnessResult {
	t.Helper()
	var r witnessResult
	raw := mustOK(t, &r, req, "witness", "--state", w.state, "--verifier", w.verifier)
	wantKeys(t, raw, "ok", "size", "root", "index", "origin")
	if !r.OK {
		t.Fatalf("ok=false in %s", raw)
	}
	return r
}

// refuse expects a refusal, checks its JSON and that the stored checkpoint did not change.
func (w *witnessEnv) refuse(t *testing.T, reason string, have uint64, req []byte) witnessRefusal {
	t.Helper()
	before, _ := os.ReadFile(w.state)
	r := mustFail(t, 1, reason, req, "witness", "--state", w.state, "--verifier", w.verifier)
	wantKeys(t, r.stdout, "ok", "reason", "message", "have")
	var out witnessRefusal
	if err := json.Unmarshal(r.stdout, &out); err != nil {
		t.Fatal(err)
	}
	if out.OK || out.Reason != reason || out.Have != have {
		t.Fatalf("refusal %+v, want reason %s have %d", out, reason, have)
	}
	if after, _ := os.ReadFile(w.state); !bytes.Equal(before, after) {
		t.Fatal("a refused request changed the stored checkpoint")
	}
	return out
}

func (w *witnessEnv) alarmed(t *testing.T, reason string) {
	t.Helper()
	raw, err := os.ReadFile(w.state + ".alarm")
	if err != nil {
		t.Fatalf("no alarm after %s: %v", reason, err)
	}
	var a alarmRecord
	if err := json.Unmarshal(raw, &a); err != nil || a.Reason != reason || a.Stored == "" || a.Received == "" || a.Time == "" {
		t.Fatalf("alarm %s: %v", raw, err)
	}
}

func (w *witnessEnv) notAlarmed(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(w.state + ".alarm"); err == nil {
		t.Fatal("alarm raised")
	}
}

// editRequest changes one field of a witness request.
func editRequest(t *testing.T, req []byte, field string, value any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(req, &m); err != nil {
		t.Fatal(err)
	}
	if value == nil {
		delete(m, field)
	} else {
		m[field] = value
	}
	b, _ := json.Marshal(m)
	return b
}

func TestWitnessAcceptsAndCosigns(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, entriesN("e", 5)...)
	w := newWitness(t, l)
	wkey, wvkey := newKey(t, "witness.example/keys-a")

	req := witnessRequest(t, l.prove(t, 0, 3), 3)
	var r witnessResult
	raw := mustOK(t, &r, req, "witness", "--state", w.state, "--verifier", w.verifier, "--cosign-key", wkey)
	wantKeys(t, raw, "ok", "size", "root", "index", "origin", "cosignature")
	if !r.OK || r.Size != 5 || r.Index != 3 || r.Origin != "qubes.example/w" {
		t.Fatalf("%+v", r)
	}
	var in struct{ Checkpoint string }
	json.Unmarshal(req, &in)
	if st, _ := os.ReadFile(w.state); string(st) != in.Checkpoint {
		t.Fatalf("stored %q", st)
	}
	// The cosignature line verifies with the reference cosignature/v1 verifier, added to the
	// log's checkpoint note.
	logV, _ := note.NewVerifier(l.verifier)
	cosigV, err := fnote.NewVerifierForCosignatureV1(wvkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(in.Checkpoint+r.Cosignature), note.VerifierList(logV, cosigV))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("cosigned note: %v (%d sigs)", err, len(n.Sigs))
	}
	if _, _, _, err := log.ParseCheckpoint([]byte(in.Checkpoint+r.Cosignature), l.origin, logV, cosigV); err != nil {
		t.Fatal(err)
	}

	// Growing: a newer checkpoint with a consistency proof from the stored size.
	l.append(t, entriesN("f", 7)...)
	r = w.accept(t, witnessRequest(t, l.prove(t, 5, 10), 10))
	if r.Size != 12 {
		t.Fatalf("size %d", r.Size)
	}
	// The same checkpoint again, and an older entry against it.
	w.accept(t, witnessRequest(t, l.prove(t, 12, 0), 0))
	w.notAlarmed(t)
}

func TestWitnessRefusesBadCheckpoints(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, entriesN("e", 4)...)
	w := newWitness(t, l)
	good := witnessRequest(t, l.prove(t, 0, 1), 1)
	var in struct{ Checkpoint string }
	json.Unmarshal(good, &in)
	cp := in.Checkpoint

	t.Run("forged signature", func(t *testing.T) {
		w.refuse(t, "bad-signature", 0, editRequest(t, good, "checkpoint", forgeSignature(t, cp)))
	})
	t.Run("forged root", func(t *testing.T) {
		lines := strings.SplitN(cp, "\n", 4)
		root, _ := base64.StdEncoding.DecodeString(lines[2])
		root[0] ^= 1
		lines[2] = base64.StdEncoding.EncodeToString(root)
		w.refuse(t, "bad-signature", 0, editRequest(t, good, "checkpoint", strings.Join(lines, "\n")))
	})
	t.Run("wrong key", func(t *testing.T) {
		other := newLog(t, "qubes.example/w") // same origin, another key
		other.append(t, entriesN("e", 4)...)
		w.refuse(t, "bad-signature", 0, witnessRequest(t, other.prove(t, 0, 1), 1))
	})
	t.Run("wrong origin", func(t *testing.T) {
		// Signed by the right key, but the body names another log.
		key, _ := os.ReadFile(l.key)
		s, err := note.NewSigner(strings.TrimSpace(string(key)))
		if err != nil {
			t.Fatal(err)
		}
		body := "other.example/log" + cp[strings.Index(cp, "\n"):strings.Index(cp, "\n\n")+1]
		signed, err := note.Sign(&note.Note{Text: body}, s)
		if err != nil {
			t.Fatal(err)
		}
		w.refuse(t, "wrong-origin", 0, editRequest(t, good, "checkpoint", string(signed)))
	})
	t.Run("not a note", func(t *testing.T) {
		w.refuse(t, "malformed", 0, editRequest(t, good, "checkpoint", "qubes.example/w\n4\n"))
	})
	w.notAlarmed(t)
	if _, err := os.Stat(w.state); err == nil {
		t.Fatal("state written by refused requests")
	}
	w.accept(t, good)
}

func TestWitnessRefusesMalformedInput(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, entriesN("e", 4)...)
	w := newWitness(t, l)
	good := witnessRequest(t, l.prove(t, 0, 1), 1)
	hash31 := base64.StdEncoding.EncodeToString(make([]byte, 31))
	cases := map[string][]byte{
		"not json":         []byte("{"),
		"trailing data":    append(append([]byte{}, good...), []byte(" {}")...),
		"unknown field":    editRequest(t, good, "extra", 1),
		"missing field":    editRequest(t, good, "from", nil),
		"null field":       editRequest(t, good, "inclusion", json.RawMessage("null")),
		"negative index":   editRequest(t, good, "index", -1),
		"bad entry base64": editRequest(t, good, "entry", "not base64!"),
		"unpadded base64":  editRequest(t, good, "entry", "ZQ"),
		"short hash":       editRequest(t, good, "inclusion", []string{hash31}),
		"entry too large":  editRequest(t, good, "entry", base64.StdEncoding.EncodeToString(make([]byte, maxEntrySize+1))),
		"too many hashes":  editRequest(t, good, "consistency", make([]string, maxProofHashes+1)),
		"oversize input":   append(bytes.Repeat([]byte(" "), maxWitnessInput), good...), // valid JSON, too long
		"consistency from 0": editRequest(t, good, "consistency",
			[]string{base64.StdEncoding.EncodeToString(make([]byte, 32))}),
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			r := w.refuse(t, "malformed", 0, req)
			if name == "oversize input" && !strings.Contains(r.Message, "more than") {
				t.Fatalf("refused for another reason: %s", r.Message)
			}
		})
	}
	w.accept(t, good)
	mustFail(t, 2, "usage", good, "witness", "--state", w.state)
	mustFail(t, 2, "bad-key", good, "witness", "--state", w.state, "--verifier", "nonsense")
}

func TestWitnessInclusion(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, entriesN("e", 6)...)
	w := newWitness(t, l)
	p := l.prove(t, 0, 2, 3)
	good := witnessRequest(t, p, 3)
	w.refuse(t, "bad-inclusion", 0, editRequest(t, witnessRequest(t, p, 2), "index", 3))     // proof of another index
	w.refuse(t, "bad-inclusion", 0, editRequest(t, good, "entry", p.Entries["2"]))           // another entry
	w.refuse(t, "bad-inclusion", 0, editRequest(t, good, "index", 6))                        // index = size
	w.refuse(t, "bad-inclusion", 0, editRequest(t, good, "inclusion", p.Inclusion["3"][:2])) // truncated proof
	w.notAlarmed(t)
	w.accept(t, good)
}

func TestWitnessWrongFromAndRetry(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, entriesN("e", 5)...)
	w := newWitness(t, l)
	w.refuse(t, "wrong-from", 0, witnessRequest(t, l.prove(t, 3, 1), 1)) // nothing stored yet: from must be 0
	w.accept(t, witnessRequest(t, l.prove(t, 0, 1), 1))
	l.append(t, entriesN("f", 5)...)
	r := w.refuse(t, "wrong-from", 5, witnessRequest(t, l.prove(t, 3, 7), 7))
	w.notAlarmed(t)
	// The caller retries from the size the witness reported.
	if got := w.accept(t, witnessRequest(t, l.prove(t, int64(r.Have), 7), 7)); got.Size != 10 {
		t.Fatalf("size %d", got.Size)
	}
}

func TestWitnessRewind(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, entriesN("e", 5)...)
	old := witnessRequest(t, l.prove(t, 0, 1), 1)
	l.append(t, entriesN("f", 5)...)
	w := newWitness(t, l)
	w.accept(t, witnessRequest(t, l.prove(t, 0, 1), 1))
	w.refuse(t, "rewind", 10, old)
	w.alarmed(t, "rewind")
}

// forkedLogs returns two logs under one key that agree on the first 5 entries and then differ,
// each 7 entries long.
func forkedLogs(t *testing.T) (a, b *testLog) {
	a = newLog(t, "qubes.example/fork")
	b = a.withKey(t)
	a.append(t, entriesN("common", 5)...)
	b.append(t, entriesN("common", 5)...)
	a.append(t, "a5", "a6")
	b.append(t, "b5", "b6")
	return a, b
}

func TestWitnessFork(t *testing.T) {
	t.Parallel()
	a, b := forkedLogs(t)
	w := newWitness(t, a)
	w.accept(t, witnessRequest(t, a.prove(t, 0, 6), 6))
	w.refuse(t, "fork", 7, witnessRequest(t, b.prove(t, 7, 6), 6))
	w.alarmed(t, "fork")

	// Sticky: even the log's honest next checkpoint is refused until an operator removes the alarm.
	a.append(t, "a7")
	honest := witnessRequest(t, a.prove(t, 7, 7), 7)
	w.refuse(t, "alarm", 0, honest)
	if err := os.Remove(w.state + ".alarm"); err != nil {
		t.Fatal(err)
	}
	w.accept(t, honest)
}

func TestWitnessInconsistent(t *testing.T) {
	t.Parallel()
	a, b := forkedLogs(t)
	w := newWitness(t, a)
	w.accept(t, witnessRequest(t, a.prove(t, 0, 6), 6))
	b.append(t, "b7", "b8")
	// b's own proof from its size 7 to 9: valid for b, not from the root this witness holds.
	w.refuse(t, "inconsistent", 7, witnessRequest(t, b.prove(t, 7, 8), 8))
	w.alarmed(t, "inconsistent")
	w.refuse(t, "alarm", 0, witnessRequest(t, a.prove(t, 7, 1), 1))
}

func TestWitnessStateCorrupt(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, "e")
	w := newWitness(t, l)
	if err := os.WriteFile(w.state, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	req := witnessRequest(t, l.prove(t, 0, 0), 0)
	mustFail(t, 3, "state-corrupt", req, "witness", "--state", w.state, "--verifier", w.verifier)
	// A well-formed checkpoint that this log's key did not sign is no valid state either.
	other := newLog(t, l.origin)
	r := other.append(t, "e")
	if err := os.WriteFile(w.state, []byte(r.Checkpoint), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, 3, "state-corrupt", req, "witness", "--state", w.state, "--verifier", w.verifier)
}

// TestWitnessSerialised: a witness decision waits for the one under way (the state lock), so two
// requests are never both checked against the same stored checkpoint.
func TestWitnessSerialised(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/w")
	l.append(t, "e")
	w := newWitness(t, l)
	unlock, err := lockFile(w.state + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "witness", "--state", w.state, "--verifier", w.verifier)
	cmd.Stdin = bytes.NewReader(witnessRequest(t, l.prove(t, 0, 0), 0))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		unlock()
		t.Fatalf("witness finished while another held the state lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.state); err != nil {
		t.Fatal("not accepted after the lock was released")
	}
}
