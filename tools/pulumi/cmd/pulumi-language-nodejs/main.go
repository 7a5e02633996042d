// Command pulumi-language-nodejs is this project's own Node.js language host for the Pulumi engine.
//
// Pulumi's host lives in a Go module that is never tagged, and the Go module proxy we can reach
// does not serve it by commit, so we implement the LanguageRuntime gRPC service ourselves. It is
// deliberately small: it runs programs and plugins (policy packs) through the entry points that
// the @pulumi/pulumi npm package ships (cmd/run, cmd/run-policy-pack, cmd/run-plugin), resolved
// from the program's own node_modules, with `node` from PATH. Nothing is ever downloaded.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is stamped at build time (-X main.version=...); it names the Pulumi release we match.
var version = "dev"

// bailExitCode is what @pulumi/pulumi's run entry point exits with after it already reported the
// error to the engine; the engine then must not print a second generic message.
const bailExitCode = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
}

func main() {
	h := &host{engineAddress: engineAddressArg(os.Args[1:])}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not start: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from our first line of output.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
		os.Exit(1)
	}
}

// engineAddressArg picks the engine address out of the host's arguments: the engine passes flags
// (e.g. -tracing, -root) and the address as the last argument that is not a flag.
func engineAddressArg(args []string) string {
	var engineAddress string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			engineAddress = a
		}
	}
	return engineAddress
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: strings.TrimPrefix(version, "v")}, nil
}

// The project uses no provider plugins besides the bundled dynamic-provider host, so nothing has
// to be acquired; reporting none also guarantees the engine never tries to download one.
func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetProgramDependencies(context.Context, *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

// Dependencies are installed by the project's setup script (npm ci), never by the engine.
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest, stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	return stream.Send(&pulumirpc.InstallDependenciesResponse{
		Stdout: []byte("dependencies are installed by the project's setup script (npm ci); nothing to do\n"),
	})
}

func (h *host) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node was not found on PATH")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", node, err)
	}
	return &pulumirpc.AboutResponse{Executable: node, Version: strings.TrimSpace(string(out))}, nil
}

// options holds the runtime options of Pulumi.yaml / PulumiPolicy.yaml that we honour.
type options struct {
	typescript bool
	// transpileOnly skips ts-node's type check (a project type-checks in its own test command).
	transpileOnly bool
	tsconfig      string
	nodeargs      []string
}

func readOptions(info *pulumirpc.ProgramInfo) options {
	o := options{typescript: true}
	if info == nil || info.GetOptions() == nil {
		return o
	}
	m := info.GetOptions().AsMap()
	if v, ok := m["typescript"].(bool); ok {
		o.typescript = v
	}
	if v, ok := m["transpileOnly"].(bool); ok {
		o.transpileOnly = v
	}
	if v, ok := m["tsconfig"].(string); ok {
		o.tsconfig = v
	}
	if v, ok := m["nodeargs"].(string); ok {
		o.nodeargs = strings.Fields(v)
	}
	return o
}

// resolveEntry finds an entry point of the @pulumi/pulumi package installed for the program in dir.
func resolveEntry(node, dir, entry string) (string, error) {
	cmd := exec.Command(node, "-e", "process.stdout.write(require.resolve(process.argv[1]))", "@pulumi/pulumi/"+entry)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("cannot resolve @pulumi/pulumi/%s from %s: is @pulumi/pulumi installed there (npm ci)? %w", entry, dir, err)
	}
	return string(out), nil
}

func (o options) env(base []string) []string {
	env := append([]string{}, base...)
	env = append(env, "PULUMI_NODEJS_TYPESCRIPT="+strconv.FormatBool(o.typescript))
	if o.tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+o.tsconfig)
	}
	if o.transpileOnly {
		env = append(env, "PULUMI_NODEJS_TRANSPILE_ONLY=true")
	}
	return env
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "node was not found on PATH"}, nil
	}
	programDir, entry := runTarget(req)
	opts := readOptions(req.GetInfo())
	runJS, err := resolveEntry(node, programDir, "cmd/run")
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	env, err := runEnv(os.Environ(), req, opts)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, node, runArgs(req, opts, runJS, h.engineAddress, programDir, entry)...)
	cmd.Dir = programDir
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = env
	return runResponse(cmd.Run()), nil
}

// runTarget returns the directory to run the program in and its entry point ("." for the
// directory's package). The program info, when the engine sends it, replaces Pwd and Program.
func runTarget(req *pulumirpc.RunRequest) (programDir, entry string) {
	programDir = req.GetPwd()
	entry = req.GetProgram()
	if info := req.GetInfo(); info != nil {
		programDir = info.GetProgramDirectory()
		entry = info.GetEntryPoint()
	}
	if entry == "" {
		entry = "."
	}
	return programDir, entry
}

// runArgs is node's command line for @pulumi/pulumi's run entry point (runJS).
func runArgs(req *pulumirpc.RunRequest, opts options, runJS, engineAddress, programDir, entry string) []string {
	args := append([]string{}, opts.nodeargs...)
	args = append(args, runJS,
		"--monitor", req.GetMonitorAddress(),
		"--engine", engineAddress,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--organization", req.GetOrganization(),
		"--pwd", programDir,
		"--parallel", strconv.Itoa(int(req.GetParallel())),
		"--dry-run="+strconv.FormatBool(req.GetDryRun()),
	)
	if info := req.GetInfo(); info != nil && info.GetRootDirectory() != "" {
		args = append(args, "--root-directory", info.GetRootDirectory())
	}
	if req.GetQueryMode() {
		args = append(args, "--query-mode")
	}
	args = append(args, entry)
	return append(args, req.GetArgs()...)
}

// runEnv is the program's environment: base, then the stack's config as the run entry point
// reads it, then the runtime options.
func runEnv(base []string, req *pulumirpc.RunRequest, opts options) ([]string, error) {
	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(orEmpty(req.GetConfigSecretKeys()))
	if err != nil {
		return nil, err
	}
	env := opts.env(append(append([]string{}, base...),
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys),
	))
	if pm := req.GetConfigPropertyMap(); pm != nil {
		// The typed config is an extra; the program still gets PULUMI_CONFIG without it.
		if b, err := pm.MarshalJSON(); err == nil {
			env = append(env, "PULUMI_CONFIG_PROPERTY_MAP="+string(b))
		}
	}
	return env, nil
}

// runResponse translates how the program ended (cmd.Run's error) into the engine's answer.
func runResponse(err error) *pulumirpc.RunResponse {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}
	case errors.As(err, &exitErr):
		return exitResponse(exitCode(exitErr))
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run the program: %v", err)}
	}
}

// exitResponse answers for a program that exited with a non-zero code.
func exitResponse(code int) *pulumirpc.RunResponse {
	if code == bailExitCode {
		return &pulumirpc.RunResponse{Bail: true}
	}
	return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", code)}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func exitCode(e *exec.ExitError) int {
	if ws, ok := e.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return e.ExitCode()
}

// RunPlugin runs a plugin written in Node.js; the engine uses it for policy packs (kind analyzer).
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, stream grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]) error {
	node, err := exec.LookPath("node")
	if err != nil {
		return errors.New("node was not found on PATH")
	}
	dir := pluginDir(req)
	js, err := resolveEntry(node, dir, pluginEntry(req.GetKind()))
	if err != nil {
		return err
	}
	opts := readOptions(req.GetInfo())
	cmd := exec.CommandContext(stream.Context(), node, pluginArgs(req, opts, js, dir)...)
	cmd.Dir = dir
	cmd.Env = pluginEnv(req, opts)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var mu sync.Mutex
	send := func(msg *pulumirpc.RunPluginResponse) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(msg)
	}
	var wg sync.WaitGroup
	pump := func(r io.Reader, wrap func([]byte) *pulumirpc.RunPluginResponse) {
		defer wg.Done()
		sc := bufio.NewReader(r)
		for {
			line, err := sc.ReadBytes('\n')
			if len(line) > 0 {
				send(wrap(line))
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go pump(stdout, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}}
	})
	go pump(stderr, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}}
	})
	wg.Wait()
	code := 0
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return err
		}
		code = exitCode(exitErr)
	}
	send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)}})
	return nil
}

// pluginDir is the directory a plugin runs in: the program directory of its info, else Pwd.
func pluginDir(req *pulumirpc.RunPluginRequest) string {
	if info := req.GetInfo(); info != nil && info.GetProgramDirectory() != "" {
		return info.GetProgramDirectory()
	}
	return req.GetPwd()
}

// pluginEntry is the @pulumi/pulumi entry point that runs a plugin of the given kind.
func pluginEntry(kind string) string {
	if kind == "analyzer" {
		return "cmd/run-policy-pack"
	}
	return "cmd/run-plugin"
}

// pluginArgs is node's command line for a plugin's entry point (js): the engine's arguments, then
// the plugin's directory.
func pluginArgs(req *pulumirpc.RunPluginRequest, opts options, js, dir string) []string {
	args := append([]string{}, opts.nodeargs...)
	args = append(args, js)
	args = append(args, req.GetArgs()...)
	return append(args, dir)
}

// pluginEnv is a plugin's environment: exactly what the engine passes, plus the runtime options.
func pluginEnv(req *pulumirpc.RunPluginRequest, opts options) []string {
	env := opts.env(req.GetEnv())
	if req.GetKind() == "analyzer" && !opts.typescript {
		// run-policy-pack registers ts-node with type checking whatever the pack says. With
		// `typescript: false` the pack loads its TypeScript itself (e.g. nodeargs --require
		// esbuild-register), so ts-node is told to leave every file alone: type checks belong
		// to the project's tests, and cost ~2.5 s of every preview here.
		env = append(env, "TS_NODE_IGNORE=.*")
	}
	return env
}
