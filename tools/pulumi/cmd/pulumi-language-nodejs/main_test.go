package main

// Table tests of the host's pure decisions: arguments, runtime options, node's command lines and
// environments, and how a program's end is reported to the engine.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestEngineAddressArg(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"none", nil, ""},
		{"address only", []string{"127.0.0.1:4000"}, "127.0.0.1:4000"},
		{"flags then address", []string{"-tracing", "-root=/x", "127.0.0.1:4000"}, "127.0.0.1:4000"},
		{"only flags", []string{"-root", "--x"}, ""},
		{"last non-flag wins", []string{"first", "-v", "second"}, "second"},
		// A flag's separate value is not told apart from the address: the engine puts the address last.
		{"flag value before address", []string{"-tracing", "file:/t", "127.0.0.1:1"}, "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := engineAddressArg(tc.args); got != tc.want {
				t.Errorf("engineAddressArg(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
}

func TestHandshakeKeepsTheEnginesAddress(t *testing.T) {
	h := &host{engineAddress: "from-args"}
	if _, err := h.Handshake(context.Background(), &pulumirpc.LanguageHandshakeRequest{}); err != nil || h.engineAddress != "from-args" {
		t.Fatalf("an empty handshake changed the address to %q (%v)", h.engineAddress, err)
	}
	if _, err := h.Handshake(context.Background(), &pulumirpc.LanguageHandshakeRequest{EngineAddress: "127.0.0.1:9"}); err != nil ||
		h.engineAddress != "127.0.0.1:9" {
		t.Fatalf("engine address %q after handshake (%v), want 127.0.0.1:9", h.engineAddress, err)
	}
}

func TestGetPluginInfoReportsTheVersionWithoutV(t *testing.T) {
	defer func(v string) { version = v }(version)
	for _, tc := range []struct{ stamped, want string }{{"v3.274.1", "3.274.1"}, {"3.274.1", "3.274.1"}, {"dev", "dev"}} {
		version = tc.stamped
		info, err := (&host{}).GetPluginInfo(context.Background(), &emptypb.Empty{})
		if err != nil || info.GetVersion() != tc.want {
			t.Errorf("version %q: GetPluginInfo = %v, %v; want %q", tc.stamped, info, err, tc.want)
		}
	}
}

func TestReadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		info *pulumirpc.ProgramInfo
		want options
	}{
		{"no info: TypeScript", nil, options{typescript: true}},
		{"no options", &pulumirpc.ProgramInfo{}, options{typescript: true}},
		{"empty options", &pulumirpc.ProgramInfo{Options: mustStruct(t, map[string]any{})}, options{typescript: true}},
		{"all options", &pulumirpc.ProgramInfo{Options: mustStruct(t, map[string]any{
			"typescript": false, "transpileOnly": true, "tsconfig": "tsconfig.build.json", "nodeargs": " --require  esbuild-register\t--enable-source-maps ",
		})}, options{typescript: false, transpileOnly: true, tsconfig: "tsconfig.build.json",
			nodeargs: []string{"--require", "esbuild-register", "--enable-source-maps"}}},
		{"wrong types are ignored", &pulumirpc.ProgramInfo{Options: mustStruct(t, map[string]any{
			"typescript": "false", "transpileOnly": 1, "tsconfig": true, "nodeargs": []any{"--x"},
		})}, options{typescript: true}},
		{"blank nodeargs", &pulumirpc.ProgramInfo{Options: mustStruct(t, map[string]any{"nodeargs": "  "})}, options{typescript: true, nodeargs: []string{}}},
		{"unknown options are ignored", &pulumirpc.ProgramInfo{Options: mustStruct(t, map[string]any{"packagemanager": "npm"})}, options{typescript: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readOptions(tc.info); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("readOptions = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOptionsEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts options
		base []string
		want []string
	}{
		{"defaults", options{typescript: true}, nil, []string{"PULUMI_NODEJS_TYPESCRIPT=true"}},
		{"no TypeScript", options{}, []string{"A=1"}, []string{"A=1", "PULUMI_NODEJS_TYPESCRIPT=false"}},
		{"all, in order after base", options{typescript: true, transpileOnly: true, tsconfig: "t.json", nodeargs: []string{"--x"}}, []string{"A=1", "B=2"},
			[]string{"A=1", "B=2", "PULUMI_NODEJS_TYPESCRIPT=true", "PULUMI_NODEJS_TSCONFIG_PATH=t.json", "PULUMI_NODEJS_TRANSPILE_ONLY=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := append([]string(nil), tc.base...)
			if got := tc.opts.env(base); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("env = %q, want %q", got, tc.want)
			}
			if !reflect.DeepEqual(base, tc.base) {
				t.Errorf("base changed to %q", base)
			}
		})
	}
}

func TestOptionsEnvDoesNotWriteIntoBase(t *testing.T) {
	base := make([]string, 1, 10) // room to append in place
	base[0] = "A=1"
	first := options{typescript: true}.env(base)
	second := options{typescript: false}.env(base)
	if first[1] != "PULUMI_NODEJS_TYPESCRIPT=true" || second[1] != "PULUMI_NODEJS_TYPESCRIPT=false" {
		t.Errorf("environments share storage: %q, %q", first, second)
	}
}

func TestRunTarget(t *testing.T) {
	for _, tc := range []struct {
		name               string
		req                *pulumirpc.RunRequest
		wantDir, wantEntry string
	}{
		{"pwd and program", &pulumirpc.RunRequest{Pwd: "/p", Program: "index.ts"}, "/p", "index.ts"},
		{"no program: the package in pwd", &pulumirpc.RunRequest{Pwd: "/p"}, "/p", "."},
		{"info wins", &pulumirpc.RunRequest{Pwd: "/p", Program: "a.ts", Info: &pulumirpc.ProgramInfo{ProgramDirectory: "/i", EntryPoint: "b.ts"}}, "/i", "b.ts"},
		// The engine always fills the info it sends; an empty one is taken as it is.
		{"info without entry point", &pulumirpc.RunRequest{Pwd: "/p", Program: "a.ts", Info: &pulumirpc.ProgramInfo{ProgramDirectory: "/i"}}, "/i", "."},
		{"empty info", &pulumirpc.RunRequest{Pwd: "/p", Program: "a.ts", Info: &pulumirpc.ProgramInfo{}}, "", "."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, entry := runTarget(tc.req)
			if dir != tc.wantDir || entry != tc.wantEntry {
				t.Errorf("runTarget = %q, %q; want %q, %q", dir, entry, tc.wantDir, tc.wantEntry)
			}
		})
	}
}

func TestRunArgs(t *testing.T) {
	full := &pulumirpc.RunRequest{
		MonitorAddress: "127.0.0.1:1", Project: "proj", Stack: "dev", Organization: "org", Parallel: 16, DryRun: true,
		QueryMode: true, Args: []string{"x", "--y"}, Info: &pulumirpc.ProgramInfo{RootDirectory: "/root"},
	}
	for _, tc := range []struct {
		name string
		req  *pulumirpc.RunRequest
		opts options
		want []string
	}{
		{"minimal", &pulumirpc.RunRequest{}, options{}, []string{"/run.js", "--monitor", "", "--engine", "127.0.0.1:2", "--project", "", "--stack", "",
			"--organization", "", "--pwd", "/prog", "--parallel", "0", "--dry-run=false", "main.ts"}},
		{"everything", full, options{nodeargs: []string{"--require", "r"}}, []string{"--require", "r", "/run.js", "--monitor", "127.0.0.1:1",
			"--engine", "127.0.0.1:2", "--project", "proj", "--stack", "dev", "--organization", "org", "--pwd", "/prog", "--parallel", "16",
			"--dry-run=true", "--root-directory", "/root", "--query-mode", "main.ts", "x", "--y"}},
		{"info without root directory", &pulumirpc.RunRequest{Info: &pulumirpc.ProgramInfo{}}, options{}, []string{"/run.js", "--monitor", "",
			"--engine", "127.0.0.1:2", "--project", "", "--stack", "", "--organization", "", "--pwd", "/prog", "--parallel", "0", "--dry-run=false", "main.ts"}},
		{"negative parallel is passed on", &pulumirpc.RunRequest{Parallel: -1}, options{}, []string{"/run.js", "--monitor", "", "--engine", "127.0.0.1:2",
			"--project", "", "--stack", "", "--organization", "", "--pwd", "/prog", "--parallel", "-1", "--dry-run=false", "main.ts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runArgs(tc.req, tc.opts, "/run.js", "127.0.0.1:2", "/prog", "main.ts")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("runArgs\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRunArgsDoesNotWriteIntoTheOptions(t *testing.T) {
	nodeargs := make([]string, 1, 10)
	nodeargs[0] = "--x"
	opts := options{nodeargs: nodeargs}
	a := runArgs(&pulumirpc.RunRequest{}, opts, "/a.js", "", "", "a")
	b := runArgs(&pulumirpc.RunRequest{}, opts, "/b.js", "", "", "b")
	if a[1] != "/a.js" || b[1] != "/b.js" {
		t.Errorf("command lines share storage: %q, %q", a, b)
	}
}

func TestRunEnv(t *testing.T) {
	pm := mustStruct(t, map[string]any{"proj:n": 3.0})
	pmJSON, err := pm.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *pulumirpc.RunRequest
		opts options
		want []string
	}{
		{"no config", &pulumirpc.RunRequest{}, options{typescript: true},
			[]string{"BASE=1", "PULUMI_CONFIG=null", "PULUMI_CONFIG_SECRET_KEYS=[]", "PULUMI_NODEJS_TYPESCRIPT=true"}},
		{"empty config", &pulumirpc.RunRequest{Config: map[string]string{}, ConfigSecretKeys: []string{}}, options{},
			[]string{"BASE=1", "PULUMI_CONFIG={}", "PULUMI_CONFIG_SECRET_KEYS=[]", "PULUMI_NODEJS_TYPESCRIPT=false"}},
		{"config is JSON, keys sorted, HTML escaped as encoding/json does",
			&pulumirpc.RunRequest{Config: map[string]string{"proj:z": "1", "proj:a": `{"x":"<y>"}`}, ConfigSecretKeys: []string{"proj:a"}},
			options{typescript: true, tsconfig: "t.json", transpileOnly: true},
			[]string{"BASE=1", `PULUMI_CONFIG={"proj:a":"{\"x\":\"\u003cy\u003e\"}","proj:z":"1"}`, `PULUMI_CONFIG_SECRET_KEYS=["proj:a"]`,
				"PULUMI_NODEJS_TYPESCRIPT=true", "PULUMI_NODEJS_TSCONFIG_PATH=t.json", "PULUMI_NODEJS_TRANSPILE_ONLY=true"}},
		{"typed config comes last", &pulumirpc.RunRequest{Config: map[string]string{"proj:n": "3"}, ConfigPropertyMap: pm}, options{typescript: true},
			[]string{"BASE=1", `PULUMI_CONFIG={"proj:n":"3"}`, "PULUMI_CONFIG_SECRET_KEYS=[]", "PULUMI_NODEJS_TYPESCRIPT=true",
				"PULUMI_CONFIG_PROPERTY_MAP=" + string(pmJSON)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := []string{"BASE=1"}
			got, err := runEnv(base, tc.req, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("runEnv\n got %q\nwant %q", got, tc.want)
			}
			if len(base) != 1 || base[0] != "BASE=1" {
				t.Errorf("base changed to %q", base)
			}
		})
	}
}

func TestExitResponse(t *testing.T) {
	for _, tc := range []struct {
		code      int
		wantBail  bool
		wantError string
	}{
		{code: bailExitCode, wantBail: true},
		{code: 32, wantBail: true}, // the number @pulumi/pulumi's run entry point uses, whatever the constant says
		{code: 1, wantError: "program exited with non-zero exit code: 1"},
		{code: 31, wantError: "program exited with non-zero exit code: 31"},
		{code: 160, wantError: "program exited with non-zero exit code: 160"},
		{code: 137, wantError: "program exited with non-zero exit code: 137"},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			got := exitResponse(tc.code)
			if got.GetBail() != tc.wantBail || got.GetError() != tc.wantError {
				t.Errorf("exitResponse(%d) = {bail %v, error %q}, want {bail %v, error %q}", tc.code, got.GetBail(), got.GetError(), tc.wantBail, tc.wantError)
			}
		})
	}
}

// shellExit runs sh with the script and returns how it ended, as cmd.Run reports it.
func shellExit(t *testing.T, script string) error {
	t.Helper()
	return exec.Command("/bin/sh", "-c", script).Run()
}

func TestRunResponseAndExitCode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("signals and /bin/sh are POSIX")
	}
	for _, tc := range []struct {
		name      string
		err       error
		wantCode  int // exitCode of the *exec.ExitError, when there is one
		wantBail  bool
		wantError string
	}{
		{name: "success", err: nil},
		{name: "bail", err: shellExit(t, "exit 32"), wantCode: 32, wantBail: true},
		{name: "failure", err: shellExit(t, "exit 1"), wantCode: 1, wantError: "program exited with non-zero exit code: 1"},
		{name: "exit 255", err: shellExit(t, "exit 255"), wantCode: 255, wantError: "program exited with non-zero exit code: 255"},
		{name: "SIGTERM is 128+15", err: shellExit(t, "kill -TERM $$"), wantCode: 143, wantError: "program exited with non-zero exit code: 143"},
		{name: "SIGKILL is 128+9", err: shellExit(t, "kill -KILL $$"), wantCode: 137, wantError: "program exited with non-zero exit code: 137"},
		{name: "wrapped exit", err: fmt.Errorf("run: %w", shellExit(t, "exit 32")), wantCode: 32, wantBail: true},
		{name: "never started", err: errors.New("fork/exec /x: permission denied"), wantError: "could not run the program: fork/exec /x: permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var exitErr *exec.ExitError
			if errors.As(tc.err, &exitErr) {
				if got := exitCode(exitErr); got != tc.wantCode {
					t.Errorf("exitCode = %d, want %d", got, tc.wantCode)
				}
			} else if tc.wantCode != 0 {
				t.Fatalf("%v is not an exit", tc.err)
			}
			got := runResponse(tc.err)
			if got.GetBail() != tc.wantBail || got.GetError() != tc.wantError {
				t.Errorf("runResponse = {bail %v, error %q}, want {bail %v, error %q}", got.GetBail(), got.GetError(), tc.wantBail, tc.wantError)
			}
		})
	}
}

func TestOrEmpty(t *testing.T) {
	if got := orEmpty(nil); got == nil || len(got) != 0 {
		t.Errorf("orEmpty(nil) = %#v, want an empty slice", got)
	}
	if got := orEmpty([]string{"a"}); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("orEmpty([a]) = %q", got)
	}
}

func TestPluginDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *pulumirpc.RunPluginRequest
		want string
	}{
		{"pwd", &pulumirpc.RunPluginRequest{Pwd: "/p"}, "/p"},
		{"program directory wins", &pulumirpc.RunPluginRequest{Pwd: "/p", Info: &pulumirpc.ProgramInfo{ProgramDirectory: "/pack"}}, "/pack"},
		{"empty program directory falls back to pwd", &pulumirpc.RunPluginRequest{Pwd: "/p", Info: &pulumirpc.ProgramInfo{}}, "/p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pluginDir(tc.req); got != tc.want {
				t.Errorf("pluginDir = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPluginEntry(t *testing.T) {
	for kind, want := range map[string]string{
		"analyzer": "cmd/run-policy-pack", "resource": "cmd/run-plugin", "": "cmd/run-plugin", "Analyzer": "cmd/run-plugin", "converter": "cmd/run-plugin",
	} {
		if got := pluginEntry(kind); got != want {
			t.Errorf("pluginEntry(%q) = %q, want %q", kind, got, want)
		}
	}
}

func TestPluginArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *pulumirpc.RunPluginRequest
		opts options
		want []string
	}{
		{"bare", &pulumirpc.RunPluginRequest{}, options{}, []string{"/pp.js", "/pack"}},
		{"node args, engine args, then the directory", &pulumirpc.RunPluginRequest{Args: []string{"127.0.0.1:9", "--logflow"}},
			options{nodeargs: []string{"--require", "esbuild-register"}}, []string{"--require", "esbuild-register", "/pp.js", "127.0.0.1:9", "--logflow", "/pack"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pluginArgs(tc.req, tc.opts, "/pp.js", "/pack"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("pluginArgs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPluginEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind string
		opts options
		want []string
	}{
		{"policy pack through ts-node", "analyzer", options{typescript: true}, []string{"E=1", "PULUMI_NODEJS_TYPESCRIPT=true"}},
		{"policy pack with its own TypeScript loader", "analyzer", options{typescript: false, tsconfig: "t.json"},
			[]string{"E=1", "PULUMI_NODEJS_TYPESCRIPT=false", "PULUMI_NODEJS_TSCONFIG_PATH=t.json", "TS_NODE_IGNORE=.*"}},
		{"other plugin without TypeScript", "resource", options{typescript: false}, []string{"E=1", "PULUMI_NODEJS_TYPESCRIPT=false"}},
		{"other plugin", "", options{typescript: true, transpileOnly: true}, []string{"E=1", "PULUMI_NODEJS_TYPESCRIPT=true", "PULUMI_NODEJS_TRANSPILE_ONLY=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &pulumirpc.RunPluginRequest{Kind: tc.kind, Env: []string{"E=1"}}
			if got := pluginEnv(req, tc.opts); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("pluginEnv = %q, want %q", got, tc.want)
			}
			if !reflect.DeepEqual(req.GetEnv(), []string{"E=1"}) {
				t.Errorf("request env changed to %q", req.GetEnv())
			}
		})
	}
}

// nodeForTest is the real node: resolution is node's own algorithm, so it is tested with node.
func nodeForTest(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("these tests need node on PATH (. scripts/env.sh): %v", err)
	}
	t.Setenv("NODE_PATH", "")
	return node
}

func TestResolveEntryFindsNodeModulesUpwards(t *testing.T) {
	node := nodeForTest(t)
	root := t.TempDir()
	pkg := filepath.Join(root, "node_modules", "@pulumi", "pulumi")
	for _, entry := range []string{"cmd/run", "cmd/run-policy-pack"} {
		if err := os.MkdirAll(filepath.Join(pkg, entry), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(pkg, entry, "index.js"), "")
	}
	writeFile(t, filepath.Join(pkg, "package.json"), `{"name": "@pulumi/pulumi", "version": "3.0.0"}`)
	deep := filepath.Join(root, "stacks", "policy")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, entry, want string }{
		{root, "cmd/run", filepath.Join(pkg, "cmd", "run", "index.js")},
		{deep, "cmd/run", filepath.Join(pkg, "cmd", "run", "index.js")},
		{deep, "cmd/run-policy-pack", filepath.Join(pkg, "cmd", "run-policy-pack", "index.js")},
	} {
		got, err := resolveEntry(node, tc.dir, tc.entry)
		if err != nil || got != tc.want {
			t.Errorf("resolveEntry(%s, %s) = %q, %v; want %q", tc.dir, tc.entry, got, err, tc.want)
		}
	}
	want := "cannot resolve @pulumi/pulumi/cmd/run-plugin from " + deep + ": is @pulumi/pulumi installed there (npm ci)? exit status 1"
	if _, err := resolveEntry(node, deep, "cmd/run-plugin"); err == nil || err.Error() != want {
		t.Errorf("resolveEntry of a missing entry = %v, want %q", err, want)
	}
}

func TestResolveEntryWithoutNodeModules(t *testing.T) {
	node := nodeForTest(t)
	dir := t.TempDir()
	want := "cannot resolve @pulumi/pulumi/cmd/run from " + dir + ": is @pulumi/pulumi installed there (npm ci)? exit status 1"
	if _, err := resolveEntry(node, dir, "cmd/run"); err == nil || err.Error() != want {
		t.Errorf("resolveEntry = %v, want %q", err, want)
	}
	missing := filepath.Join(dir, "gone")
	if _, err := resolveEntry(node, missing, "cmd/run"); err == nil ||
		err.Error() != "cannot resolve @pulumi/pulumi/cmd/run from "+missing+": is @pulumi/pulumi installed there (npm ci)? chdir "+missing+
			": no such file or directory" {
		t.Errorf("resolveEntry from a missing directory = %v", err)
	}
}

// The entry points the host runs exist in the @pulumi/pulumi the project installs: a release that
// moved them would fail here rather than in the middle of a deployment.
func TestResolveEntryInTheProjectsNodeModules(t *testing.T) {
	node := nodeForTest(t)
	project, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(project, "node_modules", "@pulumi", "pulumi", "package.json")); err != nil {
		t.Fatalf("the project's node_modules are not installed (make setup): %v", err)
	}
	for _, entry := range []string{"cmd/run", pluginEntry("analyzer"), pluginEntry("resource")} {
		got, err := resolveEntry(node, project, entry)
		if err != nil {
			t.Errorf("resolveEntry(%s) = %v", entry, err)
			continue
		}
		if _, err := os.Stat(got); err != nil {
			t.Errorf("resolveEntry(%s) = %q, which does not exist: %v", entry, got, err)
		}
	}
}
