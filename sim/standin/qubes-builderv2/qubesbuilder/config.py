"""Stand-in of qubes-builderv2's configuration loader (qubes-sim).

Reads builder.yml as builderv2 does at the process level: `include` files (relative to the including
file) are read first and the including file last, dicts are merged key by key (later wins), the
`+components`/`+distributions` lists are appended, a missing include is an error.
"""
import hashlib
from pathlib import Path

import yaml


class ConfigError(Exception):
    pass


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def _load(path):
    if not path.exists():
        raise ConfigError(f"Cannot find builder configuration '{path}'.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"Failed to parse config '{path}'.") from e
    if not isinstance(data, dict):
        raise ConfigError(f"Failed to parse config '{path}'.")
    parts = []
    for inc in data.pop("include", []):
        p = Path(inc)
        parts.append(_load(p if p.is_absolute() else path.parent / p))
    parts.append(data)
    out = {}
    for part in parts:
        for k, v in part.items():
            if k.startswith("+"):
                out.setdefault(k, []).extend(v)
            elif isinstance(out.get(k), dict) and isinstance(v, dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = v
    return out


def _entries(items):
    for item in items or []:
        if isinstance(item, str):
            yield item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, opts = next(iter(item.items()))
            yield name, opts or {}
        else:
            raise ConfigError(f"Cannot parse entry {item!r}.")


class Component:
    def __init__(self, name, url, options):
        self.name, self.url, self.options = name, url, options

    def __str__(self):
        return self.name

    def source_commit(self, release):
        # The stand-in fetches no sources: a fixed commit id per component and release.
        return hashlib.sha1(f"{self.url}@{release}".encode()).hexdigest()


class Distribution:
    def __init__(self, full):
        self.distribution = full
        self.package_set, _, self.name = full.partition("-")
        if not self.name or self.package_set not in ("host", "vm"):
            raise ConfigError(f"Unsupported distribution '{full}'.")
        self.type = "rpm" if self.name.startswith("fc") else "deb"

    def __str__(self):
        return self.distribution


class Config:
    def __init__(self, conf_file):
        self._conf_file = Path(conf_file).resolve()
        self._conf = _load(self._conf_file)
        for key in ("components", "distributions", "templates"):
            merged = dict(_entries(self._conf.get(key, [])))
            for name, opts in _entries(self._conf.get(f"+{key}", [])):
                merged[name] = deep_merge(merged.get(name, {}), opts)
            self._conf[key] = [{n: o} if o else n for n, o in merged.items()]

    def get(self, key, default=None):
        return self._conf.get(key, default)

    gpg_client = property(lambda self: self.get("gpg-client", "gpg"))
    sign_key = property(lambda self: self.get("sign-key", {}))
    qubes_release = property(lambda self: self.get("qubes-release", "r4.2"))
    repository_publish = property(lambda self: self.get("repository-publish", {}))
    repository_upload_remote_host = property(lambda self: self.get("repository-upload-remote-host", {}))

    @property
    def artifacts_dir(self):
        return Path(self.get("artifacts-dir", self._conf_file.parent / "artifacts")).resolve()

    def get_distributions(self):
        return [Distribution(n) for n, _ in _entries(self.get("distributions"))]

    def get_templates(self):
        return [n for n, _ in _entries(self.get("templates"))]

    def get_components(self, filtered=None, url_match=False):
        git = self.get("git", {})
        base, prefix, suffix = git.get("baseurl", "https://github.com"), git.get("prefix", "QubesOS/qubes-"), git.get("suffix", ".git")
        comps = [Component(n, o.get("url", f"{base}/{o.get('prefix', prefix)}{n}{o.get('suffix', suffix)}"), o)
                 for n, o in _entries(self.get("components"))]
        if not filtered:
            return comps
        found = [c for c in comps if c.name in filtered
                 or (url_match and c.url.partition(prefix)[2].removesuffix(suffix) in filtered)]
        if not found:
            raise ConfigError(f"No such component: {', '.join(filtered)}")
        return found
