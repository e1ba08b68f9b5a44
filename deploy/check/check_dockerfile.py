"""Checks deploy/Dockerfile and .dockerignore for this project's rules, beyond hadolint's
general ones: a shared Rust build stage and small runtime targets, each runtime target
derived from the runtime base (never from the builder) and copying its binary, running as
a numeric non-root user, with an exec-form entrypoint, pinned base images and no secret
baked in."""

import pathlib
import re
import sys

from dockerfile_stages import stages

REPO = pathlib.Path(__file__).resolve().parents[2]
RUNTIME_TARGETS = {"coordinator": "coordinator", "signer": "signer",
                   "signer-dev": "signer", "chain-standin": "regtest-standin"}
SMALL_BASES = ("debian:bookworm-slim", "debian:trixie-slim", "gcr.io/distroless/cc")
SECRET_NAME = re.compile(r"PASSWORD|PIN$|_PIN_|TOKEN|SECRET|PRIVATE", re.IGNORECASE)


def chain(all_stages, name):
    """The stage and the stages it is built FROM, nearest first."""
    out = []
    while name in all_stages:
        out.append(all_stages[name])
        name = all_stages[name].base
    return out


def main():
    errors = []
    all_stages, args = stages()
    if len(all_stages) < 2:
        errors.append("not a multi-stage build")
    builder = all_stages.get("builder")
    if builder is None:
        errors.append("no `builder` stage")
    else:
        runs = " ".join(" ".join(c.value) for c in builder.commands if c.cmd == "RUN")
        if "cargo build" not in runs or "--release" not in runs or "--locked" not in runs:
            errors.append("builder: needs `cargo build --release --locked`")
    for stage in all_stages.values():
        if stage.base not in all_stages:
            if ":" not in stage.base.rsplit("/", 1)[-1] or stage.base.endswith(":latest"):
                errors.append(f"{stage.name}: base image {stage.base!r} is not pinned to a tag")
        for c in stage.commands:
            if c.cmd in ("ENV", "ARG"):
                for key in c.value[::2] if c.cmd == "ENV" else [v.partition("=")[0] for v in c.value]:
                    if SECRET_NAME.search(key):
                        errors.append(f"{stage.name}: {c.cmd} {key} bakes a secret into the image")
            if c.cmd == "ADD":
                errors.append(f"{stage.name}: use COPY, not ADD")
    for key in args:
        if SECRET_NAME.search(key):
            errors.append(f"ARG {key} bakes a secret into the image")

    for target, binary in RUNTIME_TARGETS.items():
        if target not in all_stages:
            errors.append(f"no target {target!r}")
            continue
        line = chain(all_stages, target)
        names = [s.name for s in line]
        if "builder" in names:
            errors.append(f"{target}: derives from the builder stage (the toolchain would ship)")
        if not line[-1].base.startswith(SMALL_BASES):
            errors.append(f"{target}: runtime base {line[-1].base!r} is not a slim/distroless image")
        users = [c.value[0] for s in line for c in reversed(s.commands) if c.cmd == "USER"]
        user = users[0] if users else "root"
        uid = user.split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            errors.append(f"{target}: runs as {user!r}, not a numeric non-root uid")
        entry = next((c for s in line for c in reversed(s.commands) if c.cmd == "ENTRYPOINT"), None)
        if entry is None or not entry.json:
            errors.append(f"{target}: needs an exec-form (JSON) ENTRYPOINT")
        copies = [c for s in line for c in s.commands if c.cmd == "COPY" and any(
            f.startswith("--from=builder") for f in c.flags)]
        if not any(v.endswith("/" + binary) for c in copies for v in c.value[:-1]):
            errors.append(f"{target}: does not copy the {binary} binary from the builder")

    ignore = (REPO / ".dockerignore").read_text().split()
    for needed in ("target", ".git", "**/.env"):
        if needed not in ignore:
            errors.append(f".dockerignore: must exclude {needed}")

    for e in errors:
        print(f"  {e}")
    print(("FAIL" if errors else "ok  ") + f" Dockerfile: targets {', '.join(RUNTIME_TARGETS)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
