"""Checks deploy/compose.yaml beyond the Compose Specification schema (check.sh runs that
first): the services of the local stack, migrations once before two replicas serve, the
load balancer over every replica, no published port but the load balancer's, build
targets that exist, pinned images, and secrets only from deploy/.env (never committed)."""

import pathlib
import re
import subprocess
import sys
import tomllib

import yaml

from dockerfile_stages import stages

DEPLOY = pathlib.Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent
SECRET_NAME = re.compile(r"PASSWORD|PIN|TOKEN|SECRET", re.IGNORECASE)
INTERPOLATION = re.compile(r"\$\{(\w+)")


def main():
    errors = []
    text = (DEPLOY / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    services = compose.get("services", {})
    all_stages, _ = stages()

    for name in ("postgres", "coordinator-migrate", "lb", "signer", "chain-standin"):
        if name not in services:
            errors.append(f"no service {name}")
    serving = [n for n, s in services.items()
               if s.get("command", [])[:2] == ["serve", "--no-migrate"] and "coordinator" in n]
    if len(serving) < 2:
        errors.append(f"needs two coordinator replicas running `serve --no-migrate`, found {serving}")
    migrate = services.get("coordinator-migrate", {})
    if migrate.get("command") != ["migrate"]:
        errors.append("coordinator-migrate must run `migrate`")
    for n in serving:
        cond = services[n].get("depends_on", {}).get("coordinator-migrate", {}).get("condition")
        if cond != "service_completed_successfully":
            errors.append(f"{n}: must wait for coordinator-migrate to complete successfully")
        if services[n].get("image") != migrate.get("image"):
            errors.append(f"{n}: image differs from coordinator-migrate's")

    haproxy = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    backends = set(re.findall(r"^\s*server\s+\S+\s+([\w-]+):\d+", haproxy, re.MULTILINE))
    if backends != set(serving):
        errors.append(f"haproxy.cfg balances {sorted(backends)}, the serving replicas are {sorted(serving)}")
    if "httpchk GET /readyz" not in haproxy:
        errors.append("haproxy.cfg: replicas must be checked with GET /readyz")

    # The load balancer and the health checks reach the port the replicas' config binds.
    config = tomllib.loads((DEPLOY / "compose" / "coordinator.toml").read_text())
    api_port = config.get("api", {}).get("bind", ":").rsplit(":", 1)[1]
    lb_ports = set(re.findall(r"^\s*server\s+\S+\s+[\w-]+:(\d+)", haproxy, re.MULTILINE))
    if lb_ports != {api_port}:
        errors.append(f"haproxy.cfg sends to port(s) {sorted(lb_ports)}, the replicas bind {api_port}")
    for n in serving:
        check = " ".join(services[n].get("healthcheck", {}).get("test", []))
        if f"/dev/tcp/127.0.0.1/{api_port} " not in check or "/readyz" not in check:
            errors.append(f"{n}: the healthcheck must ask /readyz on port {api_port}")

    for n, s in services.items():
        ports = s.get("ports", [])
        if ports and n != "lb":
            errors.append(f"{n}: publishes ports; only the load balancer does")
        for p in ports:
            if not str(p).startswith("127.0.0.1:"):
                errors.append(f"{n}: port {p} must be published on 127.0.0.1 only")
        image = s.get("image", "")
        if not image or ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            errors.append(f"{n}: image {image!r} needs a tag other than latest")
        build = s.get("build")
        if build:
            if not (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile":
                errors.append(f"{n}: builds from another Dockerfile")
            if build.get("target") not in all_stages:
                errors.append(f"{n}: build target {build.get('target')!r} is not a Dockerfile stage")
        for v in s.get("volumes", []):
            source = str(v).split(":")[0]
            if source.startswith(".") and not (DEPLOY / source).exists():
                errors.append(f"{n}: mounts {source}, which does not exist")
        for key, value in (s.get("environment") or {}).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE") \
                    and not re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)):
                errors.append(f"{n}: {key} must come from deploy/.env as ${{VAR:?...}}")
            if "://" in str(value) and "@" in str(value) and not INTERPOLATION.search(str(value)):
                errors.append(f"{n}: {key} holds a URL with a literal password")
    if services.get("signer", {}).get("build", {}).get("target") != "signer-dev":
        errors.append("signer: the compose stack runs the SoftHSM2 development target signer-dev")
    for n in ("signer", "postgres", "chain-standin"):
        if set(services.get(n, {}).get("networks", [])) & {"front"}:
            errors.append(f"{n}: must not be on the load balancer's network")

    example = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    used = set(INTERPOLATION.findall(text)) | {
        s["environment"] for s in compose.get("secrets", {}).values() if "environment" in s}
    for var in sorted(used - set(example)):
        errors.append(f".env.example does not define {var}")
    for var, value in example.items():
        if not value.startswith("change-me"):
            errors.append(f".env.example: {var} must be a change-me placeholder")
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "deploy/.env"])
    if ignored.returncode != 0:
        errors.append("deploy/.env is not ignored by git")

    for e in errors:
        print(f"  {e}")
    print(("FAIL" if errors else "ok  ") + f" compose.yaml: {len(services)} services, replicas {', '.join(serving)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
