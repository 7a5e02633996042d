package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// BenchmarkVerify audits a log of 100,000 entries of about 300 bytes (written by Tessera) and
// reports entries checked per second:
//
//	go test -run '^$' -bench Verify -benchtime 5x
func BenchmarkVerify(b *testing.B) {
	const n = 100_000
	quietLibraries()
	dir := filepath.Join(b.TempDir(), "log")
	key, err := benchKey()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := appendEntries(context.Background(), dir, key, benchEntries(n), 1024, benchBatchMaxAge); err != nil {
		b.Fatal(err)
	}
	v, err := note.NewVerifier(key.verifier)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "entries.jsonl")
	start := time.Now()
	for b.Loop() {
		if r, err := verifyLog(dir, v, nil, out); err != nil || r.Size != n {
			b.Fatalf("verify: %v", err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "entries/s")
}
