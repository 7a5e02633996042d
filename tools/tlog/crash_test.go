package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillDuringAppend kills appends with SIGKILL at many points (the first one while the log
// is being created), then appends again: the log must continue, verify, and stay consistent
// with every checkpoint a completed append returned.
func TestKillDuringAppend(t *testing.T) {
	t.Parallel()
	l := newLog(t, "qubes.example/crash")
	delays := []time.Duration{1, 2, 4, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 70, 100, 150, 200, 250}
	const batchSize = 40 // the batches cross bundle boundaries
	var completed []appendResult
	completedBatch := map[int]bool{}
	killed := 0
	for i, d := range delays {
		cmd := exec.Command(bin, "append", "--dir", l.dir, "--private", l.key)
		cmd.Stdin = bytes.NewReader(lines(entriesN(fmt.Sprintf("k%d", i), batchSize)...))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL) // fails harmlessly if it has already exited
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
			continue
		}
		if err != nil {
			t.Fatalf("append %d: %v: %s", i, err, stderr.String())
		}
		var r appendResult
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		completed = append(completed, r)
		completedBatch[i] = true
	}
	if killed < 3 {
		t.Fatalf("only %d of %d appends were killed: the test did not test crashes", killed, len(delays))
	}

	after := l.append(t, "after")
	if after.Indices[0] != after.Size-1 {
		t.Fatalf("the append after the crashes got index %d in a log of %d", after.Indices[0], after.Size)
	}
	out := filepath.Join(t.TempDir(), "entries.jsonl")
	args := []string{"--entries-out", out}
	for _, r := range completed {
		args = append(args, "--checkpoint", writeCheckpoint(t, r.Checkpoint))
	}
	l.verify(t, args...)

	// Each batch is in the log whole or not at all, in order; completed ones where they said.
	log := readEntriesOut(t, out)
	present := 0
	for i := 0; i < len(log)-1; {
		var b, j int
		if _, err := fmt.Sscanf(log[i], "k%d-%d", &b, &j); err != nil || j != 0 {
			t.Fatalf("entry %d is %q, want the start of a batch", i, log[i])
		}
		for j := range batchSize {
			if log[i+j] != fmt.Sprintf("k%d-%d", b, j) {
				t.Fatalf("batch %d is not whole at entry %d: %q", b, i+j, log[i+j])
			}
		}
		present++
		i += batchSize
	}
	for _, r := range completed {
		if !strings.HasSuffix(log[r.Indices[0]], "-0") || r.Indices[batchSize-1] != r.Indices[0]+batchSize-1 {
			t.Fatalf("completed batch at %d is not where it was reported", r.Indices[0])
		}
	}
	t.Logf("%d appends killed, %d completed, %d of the killed ones' batches made it into the log",
		killed, len(completed), present-len(completed))
}

func readEntriesOut(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Entry []byte }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, string(e.Entry))
	}
	return entries
}
