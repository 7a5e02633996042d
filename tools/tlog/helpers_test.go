package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The tests drive the real binary, so the CLI contract (stdout, stderr line, exit code) is what
// they check.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qbi-tlog-test")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "qbi-tlog")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building qbi-tlog: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cliResult struct {
	stdout []byte
	stderr string
	code   int
}

func cli(t *testing.T, stdin []byte, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return cliResult{stdout.Bytes(), stderr.String(), code}
}

var failureLine = regexp.MustCompile(`^qbi-tlog: ([a-z-]+): [^\n]+\n$`)

// mustOK runs the CLI, expects exit 0, an empty stderr and one JSON line, and decodes it into out.
func mustOK(t *testing.T, out any, stdin []byte, args ...string) []byte {
	t.Helper()
	r := cli(t, stdin, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	if bytes.Count(r.stdout, []byte("\n")) != 1 || !bytes.HasSuffix(r.stdout, []byte("\n")) {
		t.Fatalf("%v: stdout is not one line: %q", args, r.stdout)
	}
	if out != nil {
		if err := json.Unmarshal(r.stdout, out); err != nil {
			t.Fatalf("%v: stdout %q: %v", args, r.stdout, err)
		}
	}
	return r.stdout
}

// mustFail runs the CLI and expects the exit code and the reason on stderr's single line.
func mustFail(t *testing.T, code int, reason string, stdin []byte, args ...string) cliResult {
	t.Helper()
	r := cli(t, stdin, args...)
	m := failureLine.FindStringSubmatch(r.stderr)
	if r.code != code || m == nil || m[1] != reason {
		t.Fatalf("%v: want exit %d reason %q, got exit %d stderr %q stdout %q", args, code, reason, r.code, r.stderr, r.stdout)
	}
	return r
}

// jsonKeys returns the sorted top-level keys of a JSON object.
func jsonKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func wantKeys(t *testing.T, raw []byte, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := jsonKeys(t, raw); !slices.Equal(got, want) {
		t.Fatalf("JSON keys %v, want %v in %s", got, want, raw)
	}
}

type testLog struct {
	dir, key, verifier, origin string
}

func newKey(t *testing.T, origin string) (keyFile, verifier string) {
	t.Helper()
	keyFile = filepath.Join(t.TempDir(), "key")
	var k keyResult
	mustOK(t, &k, nil, "keygen", "--origin", origin, "--private-out", keyFile)
	return keyFile, k.Verifier
}

func newLog(t *testing.T, origin string) *testLog {
	t.Helper()
	key, v := newKey(t, origin)
	return &testLog{dir: filepath.Join(t.TempDir(), "log"), key: key, verifier: v, origin: origin}
}

// withKey is a second log directory signed by the same key (for forks).
func (l *testLog) withKey(t *testing.T) *testLog {
	return &testLog{dir: filepath.Join(t.TempDir(), "log"), key: l.key, verifier: l.verifier, origin: l.origin}
}

func lines(entries ...string) []byte {
	if len(entries) == 0 {
		return nil
	}
	return []byte(strings.Join(entries, "\n") + "\n")
}

func (l *testLog) append(t *testing.T, entries ...string) appendResult {
	t.Helper()
	var r appendResult
	mustOK(t, &r, lines(entries...), "append", "--dir", l.dir, "--private", l.key)
	return r
}

func (l *testLog) prove(t *testing.T, from int64, indices ...uint64) proveResult {
	t.Helper()
	args := []string{"prove", "--dir", l.dir}
	for _, i := range indices {
		args = append(args, "--index", fmt.Sprint(i))
	}
	if from >= 0 {
		args = append(args, "--from", fmt.Sprint(from))
	}
	var r proveResult
	mustOK(t, &r, nil, args...)
	return r
}

// witnessRequest builds the witness stdin for one index from prove output.
func witnessRequest(t *testing.T, p proveResult, index uint64) []byte {
	t.Helper()
	k := fmt.Sprint(index)
	if p.From == nil || p.Consistency == nil {
		t.Fatal("prove output without --from")
	}
	b, err := json.Marshal(map[string]any{
		"checkpoint": p.Checkpoint, "index": index, "entry": p.Entries[k],
		"inclusion": p.Inclusion[k], "from": *p.From, "consistency": *p.Consistency,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func entriesN(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// referenceRoot is RFC 6962's Merkle tree hash written out from the RFC's definition, independent
// of Tessera and of the merkle module.
func referenceRoot(entries [][]byte) []byte {
	if len(entries) == 0 {
		h := sha256.Sum256(nil)
		return h[:]
	}
	if len(entries) == 1 {
		h := sha256.Sum256(append([]byte{0}, entries[0]...))
		return h[:]
	}
	k := 1
	for k*2 < len(entries) {
		k *= 2
	}
	h := sha256.Sum256(slices.Concat([]byte{1}, referenceRoot(entries[:k]), referenceRoot(entries[k:])))
	return h[:]
}

func flipByte(t *testing.T, path string, offset int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset < 0 {
		offset += len(b)
	}
	b[offset] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// forgeSignature flips one bit of the signature bytes (past the key hash) of a note's last
// signature line, keeping the line well-formed.
func forgeSignature(t *testing.T, signed string) string {
	t.Helper()
	at := strings.LastIndex(signed, "\n— ") + len("\n— ")
	name, b64, _ := strings.Cut(strings.TrimSuffix(signed[at:], "\n"), " ")
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sig) < 10 {
		t.Fatalf("no signature line in %q", signed)
	}
	sig[8] ^= 1
	return signed[:at] + name + " " + base64.StdEncoding.EncodeToString(sig) + "\n"
}
