package main

// Tests of the gRPC methods as the engine calls them, with a fake `node` on PATH that records the
// command line, working directory and environment it was started with, so that the wiring of the
// pure helpers into Run and RunPlugin is checked end to end.

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeNodeScript answers the `node -e <resolve> <module>` probe with /resolved/<module>.js (or fails
// like node does when the file `unresolvable` exists in the log directory), and otherwise records
// its start and exits as the file `exit` says: a number, or TERM to die by SIGTERM.
const fakeNodeScript = `#!/bin/sh
log=%LOG%
if [ "$1" = "-e" ]; then
  pwd > "$log/resolve-cwd"
  if [ -e "$log/unresolvable" ]; then echo "Error: Cannot find module '$3'" >&2; exit 1; fi
  printf '/resolved/%s.js' "$3"
  exit 0
fi
pwd > "$log/cwd"
for a in "$@"; do printf '%s\n' "$a"; done > "$log/args"
/usr/bin/env -0 > "$log/env"
if [ -e "$log/talk" ]; then echo out-1; echo err-1 >&2; printf 'out-partial'; fi
code=$(/bin/cat "$log/exit" 2>/dev/null || echo 0)
if [ "$code" = TERM ]; then kill -TERM $$; fi
exit "$code"
`

// fakeNode puts a fake `node` first on PATH (and only it with the system's) and returns its log directory.
func fakeNode(t *testing.T) string {
	t.Helper()
	bin, log := t.TempDir(), t.TempDir()
	script := strings.ReplaceAll(fakeNodeScript, "%LOG%", log)
	if err := os.WriteFile(filepath.Join(bin, "node"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+"/usr/bin:/bin")
	// Variables of the caller's own that the host also sets would blur what the host set.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PULUMI_") || strings.HasPrefix(k, "TS_NODE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	return log
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// recordedEnv returns the variables the fake node saw, as KEY=VALUE in order.
func recordedEnv(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(log, "env"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// ours keeps the variables that the host itself sets, sorted: the shell that records them does not
// keep their order (the pure tests check it).
func ours(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "PULUMI_") || strings.HasPrefix(kv, "TS_NODE_") {
			out = append(out, kv)
		}
	}
	sort.Strings(out)
	return out
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunStartsTheProgramThroughTheRunEntryPoint(t *testing.T) {
	log := fakeNode(t)
	t.Setenv("QBI_TEST_INHERITED", "yes")
	dir := t.TempDir()
	pm := mustStruct(t, map[string]any{"p:k": "v"})
	req := &pulumirpc.RunRequest{
		Project: "proj", Stack: "dev", Organization: "org", Pwd: "/ignored", Program: "ignored.ts",
		MonitorAddress: "127.0.0.1:1234", Parallel: 8, DryRun: true, Args: []string{"a1", "a2"},
		Config: map[string]string{"p:k": "v"}, ConfigSecretKeys: []string{"p:k"}, ConfigPropertyMap: pm,
		Info: &pulumirpc.ProgramInfo{
			RootDirectory: "/root-dir", ProgramDirectory: dir, EntryPoint: "main.ts",
			Options: mustStruct(t, map[string]any{"nodeargs": "--require x  --inspect", "tsconfig": "tsconfig.x.json", "transpileOnly": true}),
		},
	}
	resp, err := (&host{engineAddress: "127.0.0.1:5678"}).Run(context.Background(), req)
	if err != nil || resp.GetError() != "" || resp.GetBail() {
		t.Fatalf("Run = %v, %v", resp, err)
	}
	wantArgs := []string{"--require", "x", "--inspect", "/resolved/@pulumi/pulumi/cmd/run.js",
		"--monitor", "127.0.0.1:1234", "--engine", "127.0.0.1:5678", "--project", "proj", "--stack", "dev",
		"--organization", "org", "--pwd", dir, "--parallel", "8", "--dry-run=true", "--root-directory", "/root-dir",
		"main.ts", "a1", "a2"}
	if got := readLines(t, filepath.Join(log, "args")); !reflect.DeepEqual(got, wantArgs) {
		t.Errorf("args\n got %q\nwant %q", got, wantArgs)
	}
	for _, f := range []string{"cwd", "resolve-cwd"} {
		if got := readLines(t, filepath.Join(log, f)); got[0] != dir {
			t.Errorf("%s = %q, want %q", f, got[0], dir)
		}
	}
	pmJSON, err := pm.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	env := recordedEnv(t, log)
	wantEnv := []string{`PULUMI_CONFIG={"p:k":"v"}`, `PULUMI_CONFIG_SECRET_KEYS=["p:k"]`, "PULUMI_NODEJS_TYPESCRIPT=true",
		"PULUMI_NODEJS_TSCONFIG_PATH=tsconfig.x.json", "PULUMI_NODEJS_TRANSPILE_ONLY=true", "PULUMI_CONFIG_PROPERTY_MAP=" + string(pmJSON)}
	if got := ours(env); !reflect.DeepEqual(got, sorted(wantEnv)) {
		t.Errorf("env\n got %q\nwant %q", got, wantEnv)
	}
	if !contains(env, "QBI_TEST_INHERITED=yes") {
		t.Errorf("the program does not inherit the host's environment: %q", env)
	}
}

func TestRunWithoutProgramInfoUsesPwdAndProgram(t *testing.T) {
	for _, tc := range []struct {
		name, program, wantEntry string
		query                    bool
		wantQuery                []string
	}{
		{name: "program given", program: "prog.ts", wantEntry: "prog.ts"},
		{name: "no program: the directory's package", program: "", wantEntry: "."},
		{name: "query mode", program: "p", wantEntry: "p", query: true, wantQuery: []string{"--query-mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := fakeNode(t)
			dir := t.TempDir()
			req := &pulumirpc.RunRequest{Pwd: dir, Program: tc.program, QueryMode: tc.query, Project: "p", Stack: "s"}
			resp, err := (&host{}).Run(context.Background(), req)
			if err != nil || resp.GetError() != "" {
				t.Fatalf("Run = %v, %v", resp, err)
			}
			want := []string{"/resolved/@pulumi/pulumi/cmd/run.js", "--monitor", "", "--engine", "", "--project", "p", "--stack", "s",
				"--organization", "", "--pwd", dir, "--parallel", "0", "--dry-run=false"}
			want = append(append(want, tc.wantQuery...), tc.wantEntry)
			if got := readLines(t, filepath.Join(log, "args")); !reflect.DeepEqual(got, want) {
				t.Errorf("args\n got %q\nwant %q", got, want)
			}
			wantEnv := []string{"PULUMI_CONFIG=null", "PULUMI_CONFIG_SECRET_KEYS=[]", "PULUMI_NODEJS_TYPESCRIPT=true"}
			if got := ours(recordedEnv(t, log)); !reflect.DeepEqual(got, sorted(wantEnv)) {
				t.Errorf("env\n got %q\nwant %q", got, wantEnv)
			}
		})
	}
}

func TestRunTranslatesTheProgramsExit(t *testing.T) {
	for _, tc := range []struct {
		exit      string
		wantBail  bool
		wantError string
	}{
		{exit: "0"},
		{exit: "32", wantBail: true},
		{exit: "1", wantError: "program exited with non-zero exit code: 1"},
		{exit: "33", wantError: "program exited with non-zero exit code: 33"},
		{exit: "TERM", wantError: "program exited with non-zero exit code: 143"},
	} {
		t.Run(tc.exit, func(t *testing.T) {
			log := fakeNode(t)
			writeFile(t, filepath.Join(log, "exit"), tc.exit)
			resp, err := (&host{}).Run(context.Background(), &pulumirpc.RunRequest{Pwd: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetBail() != tc.wantBail || resp.GetError() != tc.wantError {
				t.Errorf("Run = {bail %v, error %q}, want {bail %v, error %q}", resp.GetBail(), resp.GetError(), tc.wantBail, tc.wantError)
			}
		})
	}
}

func TestRunReportsWhatKeptTheProgramFromStarting(t *testing.T) {
	t.Run("no node", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		resp, err := (&host{}).Run(context.Background(), &pulumirpc.RunRequest{Pwd: t.TempDir()})
		if err != nil || resp.GetError() != "node was not found on PATH" {
			t.Errorf("Run = %v, %v", resp, err)
		}
	})
	t.Run("no @pulumi/pulumi", func(t *testing.T) {
		log := fakeNode(t)
		writeFile(t, filepath.Join(log, "unresolvable"), "")
		dir := t.TempDir()
		resp, err := (&host{}).Run(context.Background(), &pulumirpc.RunRequest{Pwd: dir})
		want := "cannot resolve @pulumi/pulumi/cmd/run from " + dir + ": is @pulumi/pulumi installed there (npm ci)? exit status 1"
		if err != nil || resp.GetError() != want {
			t.Errorf("Run = %v, %v; want error %q", resp, err, want)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		fakeNode(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		resp, err := (&host{}).Run(ctx, &pulumirpc.RunRequest{Pwd: t.TempDir()})
		if err != nil || resp.GetError() != "could not run the program: context canceled" {
			t.Errorf("Run = %v, %v", resp, err)
		}
	})
}

// pluginStream collects what RunPlugin sends to the engine.
type pluginStream struct {
	grpc.ServerStream
	ctx  context.Context
	mu   sync.Mutex
	sent []*pulumirpc.RunPluginResponse
}

func (s *pluginStream) Context() context.Context { return s.ctx }

func (s *pluginStream) Send(m *pulumirpc.RunPluginResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, m)
	return nil
}

// output returns what the plugin wrote to stdout and to stderr, and its exit code (-1 when none was sent).
func (s *pluginStream) output() (stdout, stderr string, code int32) {
	code = -1
	for _, m := range s.sent {
		switch o := m.GetOutput().(type) {
		case *pulumirpc.RunPluginResponse_Stdout:
			stdout += string(o.Stdout)
		case *pulumirpc.RunPluginResponse_Stderr:
			stderr += string(o.Stderr)
		case *pulumirpc.RunPluginResponse_Exitcode:
			code = o.Exitcode
		}
	}
	return stdout, stderr, code
}

func TestRunPluginStartsPolicyPacksAndPlugins(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		options    map[string]any
		wantJS     string
		wantEnv    []string
	}{
		{name: "policy pack, TypeScript by ts-node", kind: "analyzer", wantJS: "/resolved/@pulumi/pulumi/cmd/run-policy-pack.js",
			wantEnv: []string{"PULUMI_NODEJS_TYPESCRIPT=true"}},
		{name: "policy pack that loads its own TypeScript", kind: "analyzer",
			options: map[string]any{"typescript": false, "nodeargs": "--require esbuild-register"},
			wantJS:  "/resolved/@pulumi/pulumi/cmd/run-policy-pack.js",
			wantEnv: []string{"PULUMI_NODEJS_TYPESCRIPT=false", "TS_NODE_IGNORE=.*"}},
		{name: "other plugin with typescript false keeps ts-node", kind: "resource", options: map[string]any{"typescript": false},
			wantJS: "/resolved/@pulumi/pulumi/cmd/run-plugin.js", wantEnv: []string{"PULUMI_NODEJS_TYPESCRIPT=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := fakeNode(t)
			t.Setenv("QBI_TEST_INHERITED", "yes")
			writeFile(t, filepath.Join(log, "talk"), "")
			writeFile(t, filepath.Join(log, "exit"), "3")
			dir := t.TempDir()
			info := &pulumirpc.ProgramInfo{ProgramDirectory: dir}
			if tc.options != nil {
				info.Options = mustStruct(t, tc.options)
			}
			req := &pulumirpc.RunPluginRequest{Pwd: "/ignored", Kind: tc.kind, Args: []string{"127.0.0.1:9"},
				Env: []string{"ONLY_THIS=1"}, Info: info}
			stream := &pluginStream{ctx: context.Background()}
			if err := (&host{}).RunPlugin(req, stream); err != nil {
				t.Fatal(err)
			}
			var want []string
			if tc.options != nil && tc.options["nodeargs"] != nil {
				want = strings.Fields(tc.options["nodeargs"].(string))
			}
			want = append(want, tc.wantJS, "127.0.0.1:9", dir)
			if got := readLines(t, filepath.Join(log, "args")); !reflect.DeepEqual(got, want) {
				t.Errorf("args\n got %q\nwant %q", got, want)
			}
			env := recordedEnv(t, log)
			if got := ours(env); !reflect.DeepEqual(got, sorted(tc.wantEnv)) {
				t.Errorf("env\n got %q\nwant %q", got, tc.wantEnv)
			}
			if !contains(env, "ONLY_THIS=1") || contains(env, "QBI_TEST_INHERITED=yes") {
				t.Errorf("the plugin's environment is not the one the engine asked for: %q", env)
			}
			if got := readLines(t, filepath.Join(log, "cwd")); got[0] != dir {
				t.Errorf("cwd = %q, want %q", got[0], dir)
			}
			stdout, stderr, code := stream.output()
			if stdout != "out-1\nout-partial" || stderr != "err-1\n" || code != 3 {
				t.Errorf("stream = stdout %q, stderr %q, exit %d", stdout, stderr, code)
			}
		})
	}
}

func TestRunPluginWithoutProgramDirectoryUsesPwd(t *testing.T) {
	log := fakeNode(t)
	dir := t.TempDir()
	stream := &pluginStream{ctx: context.Background()}
	req := &pulumirpc.RunPluginRequest{Pwd: dir, Info: &pulumirpc.ProgramInfo{}}
	if err := (&host{}).RunPlugin(req, stream); err != nil {
		t.Fatal(err)
	}
	want := []string{"/resolved/@pulumi/pulumi/cmd/run-plugin.js", dir}
	if got := readLines(t, filepath.Join(log, "args")); !reflect.DeepEqual(got, want) {
		t.Errorf("args\n got %q\nwant %q", got, want)
	}
	if _, _, code := stream.output(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestRunPluginReportsWhatKeptThePluginFromStarting(t *testing.T) {
	t.Run("no node", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		err := (&host{}).RunPlugin(&pulumirpc.RunPluginRequest{Pwd: t.TempDir()}, &pluginStream{ctx: context.Background()})
		if err == nil || err.Error() != "node was not found on PATH" {
			t.Errorf("RunPlugin = %v", err)
		}
	})
	t.Run("no @pulumi/pulumi", func(t *testing.T) {
		log := fakeNode(t)
		writeFile(t, filepath.Join(log, "unresolvable"), "")
		dir := t.TempDir()
		err := (&host{}).RunPlugin(&pulumirpc.RunPluginRequest{Pwd: dir, Kind: "analyzer"}, &pluginStream{ctx: context.Background()})
		want := "cannot resolve @pulumi/pulumi/cmd/run-policy-pack from " + dir + ": is @pulumi/pulumi installed there (npm ci)? exit status 1"
		if err == nil || err.Error() != want {
			t.Errorf("RunPlugin = %v, want %q", err, want)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}
