#!/usr/bin/env python3
"""Bake the image locally and boot it: the offline proof that an instance launched from
the AMI serves (`make bake-local`).

1. A fresh Debian 12 root file system stands in for the official Debian 12 AMI
   (scripts/bootstrap_debian.sh; cached, so repeat runs skip debootstrap).
2. It is booted with systemd as PID 1 (systemd-nspawn --boot, on the host's network),
   receives the stage and the model where Packer's file provisioners put them, and runs
   deploy/packer/scripts/*.sh, unchanged and in order, as root, with the environment the
   Packer template gives them. Then it powers off: that root is the image.
3. The image is booted as a new instance would be, and must come up serving: both units
   active, GET /healthz/ready 200 on port 80, a prediction answered through nginx.

    python scripts/bake_local.py --stage build/image --model-path models/digits.keras

Needs root, debootstrap and systemd-nspawn (`make bake-local` installs them). Only the
host's loopback is contacted, besides Debian's package mirror for apt inside the root.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOOTSTRAP = REPO / "scripts" / "bootstrap_debian.sh"
PROVISIONING = REPO / "deploy" / "packer" / "scripts"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Where the Packer template uploads the stage and the scripts find it (its local.stage_on_instance).
STAGE_ON_IMAGE = Path("var/tmp/keras-fleet-image")
# Where the scripts are copied to run; Packer uploads them to /tmp one at a time.
SCRIPTS_ON_IMAGE = Path("var/tmp/keras-fleet-provision")
# The image's nginx listens here (LISTEN=80 in 30-configure-services.sh).
IMAGE_PORT = 80


class BakeError(RuntimeError):
    """The local bake or boot failed; the message says where."""


# --- the base root ---------------------------------------------------------------------------


def base_root(cache_dir: Path, mirror: str = DEFAULT_MIRROR) -> Path:
    """The cached Debian 12 base root, built first if missing.

    Keyed on bootstrap_debian.sh (which holds the package list) and the mirror; older
    bases are removed. A base is renamed into place only once complete.
    """
    key = hashlib.sha256(BOOTSTRAP.read_bytes() + mirror.encode()).hexdigest()[:16]
    base = cache_dir / f"debian-12-{key}"
    if base.is_dir():
        return base
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("debian-12-*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = cache_dir / f".partial-{key}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    print(f"bake-local: building the Debian 12 base root (cached in {cache_dir})", flush=True)
    try:
        subprocess.run([str(BOOTSTRAP), str(partial), mirror], check=True, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise BakeError(f"debootstrap of the base root failed (exit {exc.returncode})") from None
    partial.rename(base)
    return base


def fresh_root(base: Path, root: Path) -> Path:
    """Replace root with a copy of the base root."""
    remove_root(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
    return root


def remove_root(root: Path) -> None:
    """Delete a root file system; refuse while a process still runs in it."""
    if not root.exists():
        return
    resolved = str(root.resolve())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "root") == resolved:
                raise BakeError(f"{root} is still booted (pid {proc.name} runs in it); power it off first")
        except OSError:
            continue
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


# --- a booted root ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Machine:
    """A root file system booted with systemd as PID 1 (systemd-nspawn), sharing the host's
    network and loopback; a stand-in for an EC2 instance of the image.

    Its sshd listens on 127.0.0.1:ssh_port only; authorized_key, when given, is installed
    for the "admin" user, as cloud-init installs the key pair's key on AWS.
    """

    def __init__(self, root: Path, log: Path, authorized_key: str | None = None):
        self.root = root
        self.log = log
        self.authorized_key = authorized_key
        self.ssh_port = free_port()
        self.nspawn: subprocess.Popen | None = None
        self.init_pid = 0

    def __enter__(self) -> "Machine":
        self.boot()
        return self

    def __exit__(self, *exc) -> None:
        self.poweroff()

    def boot(self, timeout: float = 180) -> None:
        """Boot and wait until systemd has started every unit (running or degraded);
        on failure, the root is powered off before the error is raised."""
        try:
            self._boot(timeout)
        except BaseException:
            self.poweroff()
            raise

    def _boot(self, timeout: float) -> None:
        self._prepare_first_boot()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # The unified cgroup hierarchy, --register=no and --keep-unit: what nspawn needs on
        # a host whose PID 1 is not systemd (no system bus, no machined).
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        with open(self.log, "ab") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--directory", str(self.root), "--boot", "--register=no", "--keep-unit",
                 "--machine", "keras-fleet-image", "--console=passive"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.init_pid = self._wait_for_init(timeout=30)
        # systemctl, not systemd-run: units can be started only once the system is up.
        # It fails until systemd's socket exists, then waits for the boot to finish.
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline and state not in ("running", "degraded"):
            try:
                state = self.enter(["systemctl", "is-system-running", "--wait"],
                                   timeout=deadline - time.monotonic()).stdout.strip()
            except subprocess.TimeoutExpired:
                break
            if state not in ("running", "degraded"):
                time.sleep(0.5)
        if state not in ("running", "degraded"):
            raise BakeError(f"the booted root did not start within {timeout:.0f} s (state {state!r}){self.diagnostics()}")

    def enter(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command in the root's namespaces directly, as a child of this process."""
        return subprocess.run(["nsenter", "--target", str(self.init_pid), "--all", *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def run(self, argv: list[str], env: dict[str, str] | None = None, check: bool = True,
            capture: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run a command inside, as root, in a transient unit of its systemd (a clean
        environment, as for a login: not this process's)."""
        setenv = [f"--setenv={key}={value}" for key, value in (env or {}).items()]
        command = ["nsenter", "--target", str(self.init_pid), "--all",
                   "systemd-run", "--wait", "--pipe", "--quiet", "--collect", *setenv, *argv]
        result = subprocess.run(command, stdin=subprocess.DEVNULL, text=True, timeout=timeout,
                                capture_output=capture)
        if check and result.returncode != 0:
            output = f"\n{result.stdout}{result.stderr}" if capture else ""
            raise BakeError(f"{' '.join(argv)} failed with exit code {result.returncode} inside the root{output}")
        return result

    def poweroff(self, timeout: float = 90) -> bool:
        """Shut down cleanly (systemctl poweroff); kill the container only if that hangs.
        Return whether it powered off cleanly (or was already off)."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return self.nspawn is None or self.nspawn.returncode == 0
        if self.init_pid:
            try:
                self.enter(["systemctl", "poweroff"])
                return self.nspawn.wait(timeout=timeout) == 0
            except subprocess.TimeoutExpired:
                print(f"bake-local: the root did not power off in {timeout:.0f} s; killing it", file=sys.stderr)
            # Killing its PID 1 ends every process of the container's pid namespace.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.nspawn.pid, signal.SIGKILL)
        self.nspawn.wait(timeout=30)
        return False

    def diagnostics(self) -> str:
        """Failed units and the console's last lines, for error messages."""
        parts = []
        if self.nspawn is not None and self.nspawn.poll() is None and self.init_pid:
            failed = self.enter(["systemctl", "--failed", "--no-legend"])
            parts.append(f"\n--- failed units ---\n{failed.stdout}")
        if self.log.exists():
            parts.append("\n--- console ---\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-20:]))
        return "".join(parts)

    def _prepare_first_boot(self) -> None:
        # What cloud-init does on an instance's first boot: SSH host keys (cleanup removed
        # them) and the login key. The port is the local stand-in's own.
        subprocess.run(["ssh-keygen", "-A", "-f", str(self.root)], check=True, capture_output=True)
        (self.root / "etc/ssh/sshd_config.d/port.conf").write_text(f"Port {self.ssh_port}\n")
        if self.authorized_key:
            ssh_dir = self.root / "home/admin/.ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            (ssh_dir / "authorized_keys").write_text(self.authorized_key.strip() + "\n")
            admin = (self.root / "home/admin").stat()
            for path in (ssh_dir, ssh_dir / "authorized_keys"):
                os.chown(path, admin.st_uid, admin.st_gid)

    def _wait_for_init(self, timeout: float) -> int:
        """The host pid of the container's PID 1 (a descendant of nspawn whose pid there is 1)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise BakeError(f"systemd-nspawn exited with code {self.nspawn.returncode}{self.diagnostics()}")
            for pid in _descendants(self.nspawn.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
                if len(nspids) > 1 and nspids[-1] == "1":
                    return pid
            time.sleep(0.2)
        raise BakeError(f"systemd did not start in the root within {timeout:.0f} s{self.diagnostics()}")


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found.extend(int(child) for child in children)
        queue.extend(int(child) for child in children)
    return found


# --- the bake ---------------------------------------------------------------------------------


def provisioning_env(model_path: Path, model_name: str, model_version: str, app_version: str) -> dict[str, str]:
    """The environment the Packer template gives the scripts (its environment_vars)."""
    return {
        "STAGE_DIR": f"/{STAGE_ON_IMAGE}",
        "APP_VERSION": app_version,
        "MODEL_FILE": model_path.name,
        "MODEL_NAME": model_name,
        "MODEL_VERSION": model_version,
    }


def provision(root: Path, stage: Path, model_path: Path, env: dict[str, str], log: Path) -> None:
    """Boot root, upload the stage and model as Packer's file provisioners do, run every
    provisioning script in order, and power off: root is then the image."""
    target = root / STAGE_ON_IMAGE
    shutil.copytree(stage, target)
    (target / "model").mkdir(exist_ok=True)
    shutil.copy2(model_path, target / "model" / model_path.name)
    scripts = sorted(PROVISIONING.glob("*.sh"))
    shutil.copytree(PROVISIONING, root / SCRIPTS_ON_IMAGE)
    try:
        with Machine(root, log) as machine:
            for script in scripts:
                print(f"bake-local: ==> {script.name}", flush=True)
                machine.run([f"/{SCRIPTS_ON_IMAGE / script.name}"], env=env, capture=False)
    finally:
        shutil.rmtree(root / SCRIPTS_ON_IMAGE, ignore_errors=True)


def get(url: str, timeout: float = 10) -> tuple[int, dict]:
    """GET url; return the status and the JSON body."""
    return request(urllib.request.Request(url), timeout)


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    """POST a JSON body to url; return the status and the JSON body."""
    data = json.dumps(body).encode()
    return request(urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}), timeout)


def request(req: urllib.request.Request, timeout: float) -> tuple[int, dict]:
    """Send req; return the status and the JSON body, for error statuses too."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(machine: Machine, url: str, timeout: float = 300) -> dict:
    """Wait until both units are active and GET /healthz/ready answers 200; return its body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if machine.nspawn.poll() is not None:
            raise BakeError(f"the booted image stopped{machine.diagnostics()}")
        units = machine.run(["systemctl", "is-active", "keras-fleet.service", "nginx.service"], check=False)
        if units.returncode == 0:
            try:
                status, body = get(f"{url}/healthz/ready", timeout=5)
                if status == 200:
                    return body
                last = f"{status} {body}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
        else:
            last = "units: " + " ".join(units.stdout.split())
        time.sleep(1)
    journal = machine.run(["journalctl", "--no-pager", "-n", "30", "-u", "keras-fleet", "-u", "nginx"], check=False)
    raise BakeError(f"the booted image was not ready after {timeout:.0f} s (last: {last})\n{journal.stdout}")


def zero_request(metadata: dict) -> dict:
    """A one-instance row request of zeros, shaped from the model's metadata."""
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    instance = {}
    for name, tensor in signature["inputs"].items():
        value: object = 0
        for dim in reversed([int(d["size"]) for d in tensor["tensor_shape"]["dim"][1:]]):
            value = [value] * dim
        instance[name] = value
    return {"instances": [next(iter(instance.values())) if len(instance) == 1 else instance]}


def check_serving(url: str) -> str:
    """Send a prediction through nginx, built from the model's metadata; return a summary."""
    status, ready = get(f"{url}/healthz/ready")
    name = ready["model"]
    status, metadata = get(f"{url}/v1/models/{name}/metadata")
    if status != 200:
        raise BakeError(f"GET /v1/models/{name}/metadata answered {status}: {metadata}")
    status, reply = post(f"{url}/v1/models/{name}:predict", zero_request(metadata))
    if status != 200 or "predictions" not in reply:
        raise BakeError(f"the prediction through nginx answered {status}: {reply}")
    return f"model {name!r} version {ready['version']} answered a prediction through nginx on port {IMAGE_PORT}"


def check_port_free(port: int) -> None:
    """The booted image's nginx binds this port on the host's network: it must be free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            raise BakeError(f"port {port} is in use here; the booted image's nginx needs it") from None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: bake, boot, check, power off."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, required=True, help="directory made by scripts/stage_image.sh")
    parser.add_argument("--model-path", type=Path, required=True, help="the .keras file to bake in")
    parser.add_argument("--model-name", default="", help="served name; empty means the file's stem")
    parser.add_argument("--model-version", default="1")
    parser.add_argument("--app-version", required=True, help="keras-fleet version in the stage's wheelhouse")
    parser.add_argument("--root", type=Path, default=REPO / "build" / "bake-local" / "rootfs",
                        help="where the image's root file system is made (kept for inspection)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/var/cache/keras-fleet"),
                        help="where the Debian 12 base root is cached")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror for debootstrap")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bake-local: needs root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 1
    log = args.root.parent / "console.log"
    try:
        check_port_free(IMAGE_PORT)
        started = time.monotonic()
        base = base_root(args.cache_dir, args.mirror)
        fresh_root(base, args.root)
        log.unlink(missing_ok=True)
        print(f"bake-local: provisioning {args.root} (console log: {log})", flush=True)
        env = provisioning_env(args.model_path, args.model_name, args.model_version, args.app_version)
        provision(args.root, args.stage, args.model_path.resolve(), env, log)
        print("bake-local: booting the image as a new instance", flush=True)
        with Machine(args.root, log) as machine:
            url = f"http://127.0.0.1:{IMAGE_PORT}"
            wait_ready(machine, url)
            print(f"bake-local: {check_serving(url)}", flush=True)
            print("bake-local: powering off", flush=True)
            if not machine.poweroff():
                raise BakeError(f"the image did not power off cleanly{machine.diagnostics()}")
    except BakeError as exc:
        print(f"bake-local: {exc}", file=sys.stderr)
        return 1
    print(f"bake-local: done in {time.monotonic() - started:.0f} s; the image's root is {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
