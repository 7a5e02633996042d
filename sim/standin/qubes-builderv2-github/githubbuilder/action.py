"""Stand-in of qubes-builderv2-github's actions (qubes-sim), at the process level.

build-component: a fetch session, then per distribution the stages prep, build, sign and publish
in ONE qubesbuilder.BuildLog session, then an upload session. Signing uses `gpg-client` from
builder.yml: `--armor --export` of the sign key, rpm's `-sbo` form for rpm packages,
`--detach-sign --armor -u ... -o` for deb packages, and `--clearsign --local-user` of the repository
metadata on stdin. Uploads go to `repository-upload-remote-host` through the ssh ProxyCommand that
`~/.ssh/config` gives for the host (local.ConnectSSH in the net VM). A summary of each run is
written to <artifacts>/standin/<component>/<dist>.json.
"""
import datetime
import hashlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from qubesbuilder.config import Config, ConfigError


class ActionError(Exception):
    pass


class BuildLog:
    """One qubesbuilder.BuildLog session: lines go to the logs VM until closed; returns the log path."""

    def __init__(self, what):
        self.proc = subprocess.Popen(["qrexec-client-vm", "dom0", "qubesbuilder.BuildLog"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log(f"> starting build with log ({what})")

    def log(self, line):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
        print(line, flush=True)
        try:
            self.proc.stdin.write(f"{stamp} {line}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def close(self):
        self.log("> done")
        # Closes stdin (the end of the log) and waits for BuildLog to publish and print the path.
        out, err = self.proc.communicate()
        path = next((line.strip() for line in out.splitlines() if re.fullmatch(r".*\S+/log_\S+", line.strip())), None)
        if self.proc.returncode != 0 or not path:
            raise ActionError(f"qubesbuilder.BuildLog failed (exit {self.proc.returncode}): {err.strip()[:300]}")
        return path


def run(session, argv, stdin=None):
    session.log("$ " + " ".join(shlex.quote(a) for a in argv))
    r = subprocess.run(argv, input=stdin, capture_output=True)
    for line in r.stderr.decode(errors="replace").splitlines():
        session.log(f"  {line}")
    if r.returncode != 0:
        raise ActionError(f"{argv[0]} exited with {r.returncode}")
    return r.stdout


def proxy_command(host):
    """The ProxyCommand ~/.ssh/config gives for `host` (the first matching Host block), %h filled."""
    current, found = [], None
    for raw in (Path.home() / ".ssh" / "config").read_text().splitlines():
        words = raw.strip().split(None, 1)
        if len(words) != 2:
            continue
        key, value = words[0].lower(), words[1]
        if key == "host":
            current = value.split()
        elif key == "proxycommand" and host in current and found is None:
            found = value
    if not found:
        raise ActionError(f"no ProxyCommand for {host} in ~/.ssh/config")
    argv = [w.replace("%h", host) for w in shlex.split(found)]
    # qubes-sim has qrexec-client-vm on PATH, not at /usr/bin.
    if os.path.isabs(argv[0]) and not os.path.exists(argv[0]):
        argv[0] = os.path.basename(argv[0])
    return argv


def upload(session, remote, files):
    """Sends each (file, signature) to the upload host behind `remote` (user@host:/path)."""
    m = re.fullmatch(r"([a-z_][a-z0-9_-]*)@([a-z0-9.-]+):(/.*)", remote)
    if not m:
        raise ActionError(f"bad repository-upload-remote-host {remote!r}")
    _user, host, path = m.groups()
    for f, sig in files:
        data, signature = Path(f).read_bytes(), Path(sig).read_bytes()
        argv = proxy_command(host)
        session.log(f"upload {Path(f).name} to {remote} via {' '.join(argv)}")
        r = subprocess.run(argv, input=f"{path}/{Path(f).name} {len(data)} {len(signature)}\n".encode() + data + signature,
                           capture_output=True, timeout=120)
        reply = r.stdout.decode(errors="replace").strip()
        session.log(f"  {reply}")
        if r.returncode != 0 or not reply.startswith("OK"):
            raise ActionError(f"upload to {host} failed (exit {r.returncode}): {r.stderr.decode(errors='replace').strip()[:200]}")


class Action:
    def __init__(self, args, config):
        self.args, self.config = args, config
        self.release = config.qubes_release
        self.api_key = config.get("github", {}).get("api-key", "")
        self.out_root = config.artifacts_dir / "standin"

    def allowed(self, what, name):
        if self.args.no_signer_github_command_check:
            return True
        allowed = self.config.get("github", {}).get("maintainers", {}).get(self.args.signer_fpr, {}).get(what, [])
        return allowed == "_all_" or name in allowed

    def record(self, component, dist, result):
        d = self.out_root / component
        d.mkdir(parents=True, exist_ok=True)
        result.update({"release": self.release, "notified": bool(self.api_key), "time": datetime.datetime.now(datetime.timezone.utc).isoformat()})
        (d / f"{dist}.json").write_text(json.dumps(result, indent=1))
        # builderv2-github reports to GitHub with the API key; the stand-in writes the state file it keeps.
        state = self.args.state_dir / f"{self.release}-{component}-{dist}-{result.get('repository', 'current-testing')}"
        self.args.state_dir.mkdir(parents=True, exist_ok=True)
        state.write_text(f"{result['status']}\n")

    def sign_key(self, dist):
        key = self.config.sign_key.get(dist.distribution) or self.config.sign_key.get(dist.type)
        if not key or not self.config.gpg_client:
            raise ActionError(f"{dist}: no sign-key or gpg-client configured")
        return key

    def sign(self, session, dist, artifact, repo_dir):
        key, gpg = self.sign_key(dist), self.config.gpg_client
        session.log(f"sign: exporting the public key {key}")
        pub = run(session, [gpg, "--armor", "--export", key])
        if b"BEGIN PGP PUBLIC KEY BLOCK" not in pub:
            raise ActionError(f"{gpg} --export {key} returned no key")
        (repo_dir / f"{key}.asc").write_bytes(pub)
        if dist.type == "rpm":
            # rpm --addsign calls %__gpg like this; the stand-in armors a second copy for the upload.
            run(session, [gpg, "--no-verbose", "--no-armor", "-u", key, "-sbo", f"{artifact}.sig", str(artifact)])
        sig = Path(f"{artifact}.asc")
        run(session, [gpg, "--detach-sign", "--armor", "-u", key, "-o", str(sig), str(artifact)])
        return sig

    def publish(self, session, dist, artifact, repo_dir):
        key, gpg = self.sign_key(dist), self.config.gpg_client
        meta = repo_dir / "Release"
        meta.write_text(f"Suite: current-testing\nSHA256:\n {hashlib.sha256(artifact.read_bytes()).hexdigest()} {artifact.name}\n")
        (repo_dir / "InRelease").write_bytes(run(session, [gpg, "--clearsign", "--local-user", key], stdin=meta.read_bytes()))

    def build_component(self):
        try:
            components = self.config.get_components([self.args.component_name], url_match=True)
        except ConfigError as e:
            raise ActionError(f"No such component '{self.args.component_name}'.") from e
        components = [c for c in components if self.allowed("components", c.name)]
        for c in components:
            s = BuildLog(f"fetch {c.name}")
            s.log(f"fetch: {c.name} from {c.url} (stand-in: no sources are fetched; source commit {c.source_commit(self.release)})")
            fetch_log = s.close()
            for dist in self.config.get_distributions():
                result = {"status": "building", "component": c.name, "distribution": dist.distribution, "logs": {"fetch": fetch_log}}
                repo_dir = self.config.artifacts_dir / "repository-publish" / dist.type / self.release / "current-testing" / dist.distribution
                repo_dir.mkdir(parents=True, exist_ok=True)
                artifact = repo_dir / f"{c.name}_1.0-1+{dist.name}.{dist.type}"
                s = BuildLog(f"build {c.name} {dist}")
                try:
                    for stage in ("prep", "build", "sign", "publish"):
                        s.log(f"{c.name}:{dist}: stage {stage}")
                        if stage == "build":
                            artifact.write_text(f"artifact of {c.name} for {dist} built at {datetime.datetime.now(datetime.timezone.utc).isoformat()}\n")
                            s.log(f"built {artifact.name} sha256 {hashlib.sha256(artifact.read_bytes()).hexdigest()}")
                        elif stage == "sign":
                            result["signature"] = str(self.sign(s, dist, artifact, repo_dir))
                        elif stage == "publish":
                            self.publish(s, dist, artifact, repo_dir)
                    result["artifact"] = str(artifact)
                except ActionError as e:
                    s.log(f"ERROR: {e}")
                    result.update(status="failed", stage="build", reason=str(e))
                finally:
                    result["logs"]["build"] = s.close()
                if result["status"] == "failed":
                    self.record(c.name, dist.distribution, result)
                    continue
                result["status"] = "built"
                s = BuildLog(f"upload {c.name} {dist}")
                try:
                    remote = self.config.repository_upload_remote_host.get(dist.type)
                    if not remote:
                        s.log(f"{dist}: No remote location defined. Skipping.")
                    else:
                        upload(s, remote, [(artifact, Path(result["signature"]))])
                        result["uploaded"] = remote
                    result["status"] = "uploaded"
                except (ActionError, OSError, subprocess.SubprocessError) as e:
                    s.log(f"ERROR: {e}")
                    result.update(status="failed", stage="upload", reason=str(e))
                finally:
                    result["logs"]["upload"] = s.close()
                self.record(c.name, dist.distribution, result)

    def upload_component(self):
        try:
            [c] = self.config.get_components([self.args.component_name], url_match=True)
        except (ConfigError, ValueError) as e:
            raise ActionError(f"No such component '{self.args.component_name}'.") from e
        if not self.allowed("components", c.name):
            print("Cannot find any allowed components.")
            return
        if self.args.commit_sha != c.source_commit(self.release):
            print(f"Source have changed in the meantime (current: {c.source_commit(self.release)})")
            return
        wanted = self.args.distribution
        for dist in self.config.get_distributions():
            if wanted != ["all"] and dist.distribution not in wanted:
                continue
            if not self.allowed("distributions", dist.distribution):
                continue
            s = BuildLog(f"upload {c.name} {dist} to {self.args.repository_publish}")
            s.log(f"publish {c.name} for {dist} to {self.args.repository_publish} (stand-in)")
            self.record(c.name, f"{dist.distribution}-{self.args.repository_publish}",
                        {"status": "uploaded", "component": c.name, "distribution": dist.distribution,
                         "repository": self.args.repository_publish, "logs": {"upload": s.close()}})

    def other(self):
        what = self.args.subcommand
        name = getattr(self.args, "template_name", None) or "iso"
        s = BuildLog(f"{what} {name}")
        s.log(f"{what}: {vars(self.args)} (stand-in: nothing is built)")
        self.record(name, what, {"status": "done", "logs": {what: s.close()}})


def run_action(args):
    config = Config(args.builder_conf)
    action = Action(args, config)
    if args.subcommand == "build-component":
        action.build_component()
    elif args.subcommand == "upload-component":
        action.upload_component()
    else:
        action.other()
    return 0
