#!/usr/bin/env bash
# Checks the Docker deployment against the settings the code reads:
#
#   - every environment variable docker/compose.yml sets for a huddle node, and
#     every ENV of docker/Dockerfile, is either HUDDLE__SECTION__KEY naming a
#     real settings key, or a conventional name the code reads;
#   - every key of config/production.toml (and config/*.toml) is a real
#     settings key, with the type its default has;
#   - the settings keys found in src/settings.rs and config/default.toml agree
#     (so this check cannot silently drift from the code);
#   - every ${VAR} compose interpolates is documented in docker/.env.example,
#     secrets are required with ${VAR:?...}, and .env.example holds no values
#     for them;
#   - docker/Dockerfile copies the manifest of every workspace member (cargo
#     loads them all, even to build one binary) and gives each sources;
#   - docker/compose.yml is valid YAML with a health check on every service,
#     and docker/nginx.conf passes `nginx -t` (when nginx is installed or can
#     be installed quietly from apt; skipped with a notice otherwise).
#
# Usage: scripts/check-deploy.sh    (fails loudly, exit 1, on any problem)
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import yaml' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check pyyaml >/dev/null 2>&1 \
  || { echo "check-deploy: python3 with PyYAML is required (pip install pyyaml)" >&2; exit 1; }

python3 - <<'PY'
import re, sys, tomllib, yaml
from pathlib import Path

problems = []
def bad(msg):
    problems.append(msg)

# --- the settings keys, from the code -------------------------------------
src = Path("src/settings.rs").read_text()
def struct_fields(name):
    m = re.search(r"pub struct " + name + r"\s*\{(.*?)\n\}", src, re.S)
    if not m:
        sys.exit(f"check-deploy: struct {name} not found in src/settings.rs")
    return re.findall(r"^\s*pub (\w+):\s*([\w:<>]+)", m.group(1), re.M)

code_keys = set()
for section, ty in struct_fields("Settings"):
    for field, _ in struct_fields(ty):
        code_keys.add(f"{section}.{field}")
if len(code_keys) < 20:
    sys.exit(f"check-deploy: found only {len(code_keys)} settings keys in src/settings.rs")

# --- ... and from config/default.toml (values, and keys only in comments) ---
default_text = Path("config/default.toml").read_text()
default = tomllib.loads(default_text)
default_keys = {f"{s}.{k}": v for s, t in default.items() for k, v in t.items()}
documented = set(default_keys)
section = None
for line in default_text.splitlines():
    if m := re.match(r"^\[(\w+)\]", line):
        section = m.group(1)
    elif section and (m := re.match(r"^#\s*(\w+)\s*=", line)):
        documented.add(f"{section}.{m.group(1)}")
for k in sorted(set(default_keys) - code_keys):
    bad(f"config/default.toml sets {k}, which src/settings.rs does not have")
for k in sorted(code_keys - documented):
    bad(f"settings key {k} is not documented in config/default.toml")

# --- the environment names the code reads ----------------------------------
conv = re.search(r"CONVENTIONAL_VARS[^=]*=\s*&\[(.*?)\];", src, re.S)
if not conv:
    sys.exit("check-deploy: CONVENTIONAL_VARS not found in src/settings.rs")
conventional = dict(re.findall(r'\("([A-Z0-9_]+)",\s*"([a-z0-9_.]+)"\)', conv.group(1)))
for name, key in conventional.items():
    if key not in code_keys:
        bad(f"src/settings.rs maps {name} to {key}, which is not a settings key")
read_names = set(conventional)
read_names |= set(re.findall(r'(?:var|env\.get)\("([A-Z0-9_]+)"\)', src))
main = Path("src/main.rs").read_text()
if "env_logger::Env::default()" in main:
    read_names.add("RUST_LOG")  # env_logger's default filter variable
if not {"HUDDLE_ENV", "HUDDLE_CONFIG_DIR", "JWT_SECRET", "REDIS_URL"} <= read_names:
    sys.exit(f"check-deploy: could not find the environment names in src/settings.rs: {sorted(read_names)}")

def check_env(where, name, value):
    if name.startswith("HUDDLE__"):
        key = name[len("HUDDLE__"):].lower().replace("__", ".")
        if key not in code_keys:
            bad(f"{where}: {name} names settings key {key!r}, which does not exist")
        elif value == "":
            bad(f"{where}: {name} is empty (an empty HUDDLE__ value is not ignored)")
    elif name not in read_names:
        bad(f"{where}: {name} is not an environment variable huddle reads "
            f"(known: {', '.join(sorted(read_names))}, or HUDDLE__SECTION__KEY)")

# --- docker/compose.yml -----------------------------------------------------
compose_text = Path("docker/compose.yml").read_text()
try:
    compose = yaml.safe_load(compose_text)
except yaml.YAMLError as e:
    sys.exit(f"check-deploy: docker/compose.yml is not valid YAML: {e}")
services = compose.get("services") or {}
nodes = [n for n, s in services.items()
         if "build" in s or str(s.get("image", "")).startswith("huddle")]
if len(nodes) < 2:
    bad(f"docker/compose.yml: expected at least two huddle nodes, found {nodes}")
for name, svc in services.items():
    if "healthcheck" not in svc and not (svc.get("restart") == "no"):
        bad(f"docker/compose.yml: service {name} has no healthcheck")
    for dep, cond in (svc.get("depends_on") or {}).items():
        if dep not in services:
            bad(f"docker/compose.yml: {name} depends on unknown service {dep}")
        if not isinstance(cond, dict) or "condition" not in cond:
            bad(f"docker/compose.yml: {name} depends on {dep} without a condition")
for node in nodes:
    env = services[node].get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    if not env:
        bad(f"docker/compose.yml: huddle node {node} sets no environment")
    for name, value in env.items():
        check_env(f"docker/compose.yml ({node})", name, "" if value is None else str(value))
    if str(env.get("HUDDLE_ENV")) != "production":
        bad(f"docker/compose.yml ({node}): HUDDLE_ENV must be production")
    for secret in ("JWT_SECRET", "REFRESH_SECRET"):
        if not re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(env.get(secret, ""))):
            bad(f"docker/compose.yml ({node}): {secret} must be required as ${{VAR:?message}}")

# Every interpolated variable is documented in .env.example; secrets are
# required there and have no value in the example.
interpolated = {}
for m in re.finditer(r"(?<!\$)\$\{(\w+)(:?[-?])?", compose_text):
    interpolated.setdefault(m.group(1), set()).add(m.group(2) or "")
example = {}
for line in Path("docker/.env.example").read_text().splitlines():
    if m := re.match(r"^([A-Z0-9_]+)=(.*)$", line):
        example[m.group(1)] = m.group(2)
for var in sorted(set(interpolated) - set(example)):
    bad(f"docker/compose.yml uses ${{{var}}}, which docker/.env.example does not document")
for var in sorted(set(example) - set(interpolated)):
    bad(f"docker/.env.example documents {var}, which docker/compose.yml does not use")
secret_like = re.compile(r"SECRET|PASSWORD")
for var, forms in sorted(interpolated.items()):
    if secret_like.search(var):
        if forms != {":?"}:
            bad(f"docker/compose.yml: secret ${{{var}}} must always be required (${{{var}:?...}})")
        if example.get(var, "") != "":
            bad(f"docker/.env.example: {var} must be left empty, not given a value")

# --- docker/Dockerfile ENV -------------------------------------------------
dockerfile = Path("docker/Dockerfile").read_text().replace("\\\n", " ")
for line in dockerfile.splitlines():
    if m := re.match(r"^\s*ENV\s+(.*)$", line):
        for name, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S*)", m.group(1)):
            check_env("docker/Dockerfile ENV", name, value.strip('"'))
    if re.match(r"^\s*(ENV|ARG)\s+.*(SECRET|PASSWORD|SERVICE_KEYS)", line):
        bad(f"docker/Dockerfile bakes a secret into the image: {line.strip()}")
for needed in ("HEALTHCHECK", "USER ", "EXPOSE 3000", "HUDDLE_ENV=production", "/app/config", "/app/static"):
    if needed not in dockerfile:
        bad(f"docker/Dockerfile: missing {needed.strip()}")
# Cargo loads every workspace member's manifest and targets, even to build one
# binary: the build stage must copy each member's manifest and give it sources
# (its own, or an empty main).
members = tomllib.loads(Path("Cargo.toml").read_text()).get("workspace", {}).get("members", [])
for member in members:
    if f"COPY {member}/Cargo.toml {member}/Cargo.toml" not in dockerfile:
        bad(f"docker/Dockerfile: no COPY of workspace member {member}'s manifest "
            f"(cargo cannot load the workspace without it)")
    if f"COPY {member}/src {member}/src" not in dockerfile and f"> {member}/src/main.rs" not in dockerfile:
        bad(f"docker/Dockerfile: workspace member {member} gets neither its sources nor an empty main")

# --- config/*.toml overlays ------------------------------------------------
for path in sorted(Path("config").glob("*.toml")):
    if path.name == "default.toml":
        continue
    try:
        overlay = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        bad(f"{path}: invalid TOML: {e}")
        continue
    for sect, table in overlay.items():
        if not isinstance(table, dict):
            bad(f"{path}: {sect} is not a [section]")
            continue
        for k, v in table.items():
            key = f"{sect}.{k}"
            if key not in code_keys:
                bad(f"{path}: {key} is not a settings key")
            elif key in default_keys and type(v) is not type(default_keys[key]):
                bad(f"{path}: {key} is a {type(v).__name__}, the default is a {type(default_keys[key]).__name__}")
            if re.search(r"secret|keys|uri|url", k) and v not in ("", [], None):
                bad(f"{path}: {key} holds a value; secrets and credentials come from the environment")

if problems:
    print("check-deploy: FAILED", file=sys.stderr)
    for p in problems:
        print("  - " + p, file=sys.stderr)
    sys.exit(1)
print(f"check-deploy: {len(nodes)} huddle nodes, {len(code_keys)} settings keys, "
      f"{len(read_names)} environment names: compose, Dockerfile and config/*.toml agree")
PY

# --- nginx -t on docker/nginx.conf -----------------------------------------
if ! command -v nginx >/dev/null 2>&1 && [ -z "${CHECK_DEPLOY_NO_INSTALL:-}" ]; then
  if [ "$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=skip; fi
  if [ "$sudo" != skip ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq nginx-light >/dev/null 2>&1 \
      || { $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null 2>&1 \
           && $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq nginx-light >/dev/null 2>&1; } \
      || true
  fi
fi
nginx_bin=$(command -v nginx || true)
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  echo "check-deploy: NOTICE nginx is not installed; skipped nginx -t on docker/nginx.conf" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The compose service names do not resolve here: point them at 127.0.0.1
# (nginx resolves upstream names while checking). Everything else is as shipped.
sed -E 's/\b(huddle[0-9]+):3000\b/127.0.0.1:3000/' docker/nginx.conf > "$tmp/nginx.conf"
# The official image has mime.types at the same path; use the local one when
# it exists, else an empty stand-in.
if [ ! -f /etc/nginx/mime.types ]; then
  : > "$tmp/mime.types"
  sed -i "s#/etc/nginx/mime.types#$tmp/mime.types#" "$tmp/nginx.conf"
fi
# nginx.conf sets its own pid file (/tmp/nginx.pid); -t only reads it.
if ! out=$("$nginx_bin" -t -q -p "$tmp" -e "$tmp/error.log" -c "$tmp/nginx.conf" 2>&1); then
  echo "check-deploy: FAILED nginx -t on docker/nginx.conf:" >&2
  echo "$out" >&2
  exit 1
fi
echo "check-deploy: nginx -t ($("$nginx_bin" -v 2>&1 | sed 's/.*: //')) accepts docker/nginx.conf"
