package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"golang.org/x/mod/sumdb/note"
)

type benchResult struct {
	Entries   int     `json:"entries"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"perSecond"`
}

// cmdBenchAppend measures Tessera's POSIX appender in one process at full speed: the floor that
// the site's append path is compared with.
func cmdBenchAppend(args []string, _ io.Reader) (any, error) {
	fs := newFlags("bench-append")
	dir := fs.requiredString("dir", "log directory (created)")
	n := fs.Uint("n", 0, "number of entries")
	batch := fs.Uint("batch", 256, "Tessera batch size")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	if *n == 0 || *batch == 0 {
		return nil, usage("bench-append: --n and --batch must be positive")
	}
	key, err := benchKey()
	if err != nil {
		return nil, err
	}
	entries := benchEntries(int(*n))
	start := time.Now()
	if _, err := appendEntries(context.Background(), *dir, key, entries, *batch, benchBatchMaxAge); err != nil {
		return nil, err
	}
	s := time.Since(start).Seconds()
	return benchResult{Entries: len(entries), Seconds: s, PerSecond: float64(len(entries)) / s}, nil
}

// benchKey is a throwaway log key held in memory.
func benchKey() (*noteKey, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "bench.qbi-tlog.invalid/log")
	if err != nil {
		return nil, err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	return &noteKey{private: skey, signer: s, verifier: vkey}, nil
}

// benchEntries makes n distinct entries of about 300 bytes, the size of a signing request record.
func benchEntries(n int) [][]byte {
	pad := make([]byte, 280)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	entries := make([][]byte, n)
	for i := range entries {
		entries[i] = fmt.Appendf(nil, "entry %012d %s", i, pad)
	}
	return entries
}
