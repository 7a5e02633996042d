// Command qbi-tlog keeps the site's transparency log and checks it: it appends to a
// C2SP tlog-tiles log with Tessera's POSIX driver (logs VM), builds proofs from the tiles,
// witnesses checkpoints (keys VMs) and audits a published log directory.
//
// Contract: on success one JSON object on one line on stdout and exit 0; usage errors exit 2,
// I/O errors exit 3, refusals and verification failures exit 1. Every non-zero exit writes one
// line "qbi-tlog: <reason>: <message>" to stderr; witness and verify also print their JSON
// result on stdout when they refuse.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

const (
	exitRefused = 1
	exitUsage   = 2
	exitIO      = 3
)

// failure is an error with the exit code and reason code the CLI contract gives it.
type failure struct {
	exit   int
	reason string
	msg    string
}

func (f *failure) Error() string { return f.reason + ": " + f.msg }

func refuse(reason, format string, a ...any) *failure {
	return &failure{exitRefused, reason, fmt.Sprintf(format, a...)}
}

func usage(format string, a ...any) *failure {
	return &failure{exitUsage, "usage", fmt.Sprintf(format, a...)}
}

func ioFailure(err error) *failure {
	return &failure{exitIO, "io", err.Error()}
}

// command runs one subcommand. It returns the JSON result (printed on success, and also on a
// refusal when non-nil) and the error that decides the exit code.
type command func(args []string, stdin io.Reader) (any, error)

var commands = map[string]command{
	"keygen":       cmdKeygen,
	"pubkey":       cmdPubkey,
	"append":       cmdAppend,
	"prove":        cmdProve,
	"witness":      cmdWitness,
	"verify":       cmdVerify,
	"bench-append": cmdBenchAppend,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	quietLibraries()
	if len(args) == 0 {
		return report(stdout, stderr, nil, usage("no subcommand (one of keygen, pubkey, append, prove, witness, verify, bench-append)"))
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return report(stdout, stderr, nil, usage("unknown subcommand %q", args[0]))
	}
	out, err := cmd(args[1:], stdin)
	return report(stdout, stderr, out, err)
}

// quietLibraries silences Tessera, which logs through klog and slog: the contract allows stderr
// only for the one failure line.
func quietLibraries() {
	klog.SetLogger(logr.Discard())
	slog.SetDefault(slog.New(slog.DiscardHandler))
}

func report(stdout, stderr io.Writer, out any, err error) int {
	var f *failure
	if err != nil && !errors.As(err, &f) {
		f = ioFailure(err)
	}
	if out != nil && (f == nil || f.exit == exitRefused) {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if encErr := enc.Encode(out); encErr != nil && f == nil {
			f = ioFailure(fmt.Errorf("writing the result: %w", encErr))
		}
	}
	if f == nil {
		return 0
	}
	fmt.Fprintf(stderr, "qbi-tlog: %s: %s\n", f.reason, strings.ReplaceAll(f.msg, "\n", " "))
	return f.exit
}

// flags wraps a FlagSet so that every flag error is a usage failure naming the subcommand.
type flags struct {
	*flag.FlagSet
	required []string
}

func newFlags(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flags{FlagSet: fs}
}

// requiredString declares a string flag that must be given and not be empty.
func (f *flags) requiredString(name, help string) *string {
	f.required = append(f.required, name)
	return f.String(name, "", help)
}

func (f *flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		return usage("%s: %v", f.Name(), err)
	}
	if f.NArg() > 0 {
		return usage("%s: unexpected argument %q", f.Name(), f.Arg(0))
	}
	for _, name := range f.required {
		if f.Lookup(name).Value.String() == "" {
			return usage("%s: --%s is required", f.Name(), name)
		}
	}
	return nil
}

// uintList is a repeatable flag of unsigned decimal numbers.
type uintList []uint64

func (l *uintList) String() string { return fmt.Sprint(*l) }

func (l *uintList) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not an unsigned decimal number", s)
	}
	*l = append(*l, v)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

// optionalUint is an unsigned flag that records whether it was given.
type optionalUint struct {
	set bool
	v   uint64
}

func (o *optionalUint) String() string { return strconv.FormatUint(o.v, 10) }

func (o *optionalUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not an unsigned decimal number", s)
	}
	o.set, o.v = true, v
	return nil
}
