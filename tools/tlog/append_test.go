package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

func TestKeygenAndPubkey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "log.key")
	out := mustOK(t, nil, nil, "keygen", "--origin", "qubes.example/log", "--private-out", keyFile)
	wantKeys(t, out, "origin", "verifier")
	var k keyResult
	mustOK(t, &k, nil, "keygen", "--origin", "other.example/log", "--private-out", filepath.Join(dir, "other.key"))
	mustOK(t, &k, nil, "pubkey", "--private", keyFile)
	if k.Origin != "qubes.example/log" {
		t.Fatalf("origin %q", k.Origin)
	}
	v, err := note.NewVerifier(k.Verifier)
	if err != nil || v.Name() != "qubes.example/log" {
		t.Fatalf("verifier %q: %v", k.Verifier, err)
	}
	if again := mustOK(t, nil, nil, "pubkey", "--private", keyFile); !bytes.Contains(again, []byte(k.Verifier)) {
		t.Fatalf("pubkey is not stable: %s", again)
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v: %v", st.Mode(), err)
	}
	key, _ := os.ReadFile(keyFile)
	if !strings.HasPrefix(string(key), "PRIVATE+KEY+qubes.example/log+") {
		t.Fatalf("key file %q", key)
	}

	// Never overwrite a key.
	mustFail(t, 1, "exists", nil, "keygen", "--origin", "qubes.example/log", "--private-out", keyFile)
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(after, key) {
		t.Fatal("keygen replaced an existing key")
	}
	for _, origin := range []string{"with space", "with+plus", "tab\there", "é", strings.Repeat("a", 256)} {
		mustFail(t, 2, "usage", nil, "keygen", "--origin", origin, "--private-out", filepath.Join(dir, "bad"))
	}
	mustOK(t, nil, nil, "keygen", "--origin", strings.Repeat("a", 255), "--private-out", filepath.Join(dir, "long"))
	mustFail(t, 2, "usage", nil, "keygen", "--origin", "x")
	mustFail(t, 2, "usage", nil, "nonsense")
	os.WriteFile(filepath.Join(dir, "garbage"), []byte("PRIVATE+KEY+nope\n"), 0o600)
	mustFail(t, 2, "bad-key", nil, "pubkey", "--private", filepath.Join(dir, "garbage"))
	mustFail(t, 3, "io", nil, "pubkey", "--private", filepath.Join(dir, "missing"))
}

// TestAppendProveInterop checks append's checkpoints and prove's proofs with the reference code
// of the field (x/mod note, formats/log, merkle/proof) and an RFC 6962 root written from the RFC.
func TestAppendProveInterop(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/interop")
	v, err := note.NewVerifier(l.verifier)
	if err != nil {
		t.Fatal(err)
	}
	first := l.append(t)
	if len(first.Indices) != 0 || first.Size != 0 {
		t.Fatalf("empty append: %+v", first)
	}
	if empty := sha256.Sum256(nil); !bytes.Equal(first.Root, empty[:]) {
		t.Fatalf("empty root %x", first.Root)
	}
	raw := mustOK(t, nil, lines("x"), "append", "--dir", l.dir, "--private", l.key)
	wantKeys(t, raw, "indices", "size", "root", "checkpoint")

	all := [][]byte{[]byte("x")}
	history := []appendResult{first}
	for _, n := range []int{1, 10, 300, 1} { // 300 crosses the first 256-entry bundle
		batch := entriesN(fmt.Sprintf("batch%d", len(history)), n)
		r := l.append(t, batch...)
		for i, e := range batch {
			if r.Indices[i] != uint64(len(all)) {
				t.Fatalf("entry %q got index %d, want %d", e, r.Indices[i], len(all))
			}
			all = append(all, []byte(e))
		}
		history = append(history, r)
	}
	for _, r := range history {
		n, err := note.Open([]byte(r.Checkpoint), note.VerifierList(v))
		if err != nil || len(n.Sigs) != 1 {
			t.Fatalf("note.Open: %v", err)
		}
		cp, _, _, err := log.ParseCheckpoint([]byte(r.Checkpoint), "qubes.example/interop", v)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != r.Size || !bytes.Equal(cp.Hash, r.Root) {
			t.Fatalf("checkpoint %d/%x, output %d/%x", cp.Size, cp.Hash, r.Size, r.Root)
		}
		if want := referenceRoot(all[:r.Size]); !bytes.Equal(cp.Hash, want) {
			t.Fatalf("size %d: root %x, RFC 6962 gives %x", r.Size, cp.Hash, want)
		}
	}

	size := uint64(len(all))
	indices := []uint64{0, 1, 5, 255, 256, 300, size - 1}
	for _, h := range history {
		p := l.prove(t, int64(h.Size), indices...)
		if p.Size != size || p.Checkpoint != history[len(history)-1].Checkpoint {
			t.Fatalf("prove used size %d", p.Size)
		}
		for _, i := range indices {
			k := fmt.Sprint(i)
			if !bytes.Equal(p.Entries[k], all[i]) {
				t.Fatalf("entry %d: %q, want %q", i, p.Entries[k], all[i])
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, rfc6962.DefaultHasher.HashLeaf(all[i]), p.Inclusion[k], p.Root); err != nil {
				t.Fatalf("inclusion of %d: %v", i, err)
			}
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, h.Size, size, *p.Consistency, h.Root, p.Root); err != nil {
			t.Fatalf("consistency %d -> %d: %v", h.Size, size, err)
		}
	}
	raw = mustOK(t, nil, nil, "prove", "--dir", l.dir, "--index", "3", "--from", "2")
	wantKeys(t, raw, "checkpoint", "size", "root", "inclusion", "entries", "from", "consistency")
	raw = mustOK(t, nil, nil, "prove", "--dir", l.dir)
	wantKeys(t, raw, "checkpoint", "size", "root", "inclusion", "entries")
	for _, from := range []string{"0", fmt.Sprint(size)} {
		if raw := mustOK(t, nil, nil, "prove", "--dir", l.dir, "--from", from); !bytes.Contains(raw, []byte(`"consistency":[]`)) {
			t.Fatalf("--from %s: %s", from, raw)
		}
	}
	mustFail(t, 1, "out-of-range", nil, "prove", "--dir", l.dir, "--index", fmt.Sprint(size))
	mustFail(t, 1, "out-of-range", nil, "prove", "--dir", l.dir, "--from", fmt.Sprint(size+1))
	mustFail(t, 2, "usage", nil, "prove", "--dir", l.dir, "--index", "-1")
}

// TestAppendRefusesBadInput: input is checked whole before anything is appended.
func TestAppendRefusesBadInput(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/input")
	before := l.append(t, "a", "b")
	tooMany := bytes.Repeat([]byte("e\n"), maxEntriesPerRun+1)
	for name, stdin := range map[string][]byte{
		"empty line":     []byte("ok\n\nok\n"),
		"unterminated":   []byte("ok\nno newline"),
		"entry too long": append(bytes.Repeat([]byte("z"), maxEntrySize+1), '\n'),
		"too many lines": tooMany,
	} {
		t.Run(name, func(t *testing.T) {
			mustFail(t, 1, "malformed", stdin, "append", "--dir", l.dir, "--private", l.key)
			if after := l.append(t); after.Size != before.Size {
				t.Fatalf("size %d after a refused append, want %d", after.Size, before.Size)
			}
		})
	}
	// The limits themselves are accepted.
	r := l.append(t, strings.Repeat("z", maxEntrySize))
	if r.Size != before.Size+1 {
		t.Fatalf("size %d", r.Size)
	}
	r = l.append(t, entriesN("many", maxEntriesPerRun)...)
	if len(r.Indices) != maxEntriesPerRun || r.Indices[maxEntriesPerRun-1] != before.Size+maxEntriesPerRun {
		t.Fatalf("indices %d..%d", r.Indices[0], r.Indices[len(r.Indices)-1])
	}
	// Another key never extends this log.
	otherKey, _ := newKey(t, l.origin)
	mustFail(t, 1, "wrong-key", lines("x"), "append", "--dir", l.dir, "--private", otherKey)
	if after := l.append(t); after.Size != r.Indices[maxEntriesPerRun-1]+1 {
		t.Fatalf("size %d after a refused append", after.Size)
	}
	mustFail(t, 2, "usage", nil, "append", "--dir", l.dir)
	mustFail(t, 2, "bad-key", nil, "append", "--dir", l.dir, "--private", l.dir+"/checkpoint")
}
