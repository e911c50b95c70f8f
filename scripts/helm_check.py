#!/usr/bin/env python3
"""Checks of the Helm chart helm/coffer; run through scripts/helm-check.sh.

For every value set (the defaults and helm/coffer/ci/*-values.yaml): `helm lint`, `helm
template`, kubernetes-validate (strict) on the rendered manifests, and assertions on the
rendered objects. With --coffer, also a live run of the renders of the defaults, notls and
servername sets: each one's three pods started as local processes with the StatefulSet's
own args and env and their own config files (addresses mapped to 127.0.0.1 ports, paths to
a temporary directory, TLS from the certificate recipe in helm/coffer/README.md, run as
written), then the README's unseal ceremony with the coffer CLI; and the dev set's pod,
its args and env as rendered, used with the rendered dev root token. Prints "N passed,
N failed" at the end; exits 1 on any failure.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import yaml

RELEASE = "t"
NAMESPACE = "secrets"
READINESS_PATH = "/v1/sys/health?standbyok=true&sealedcode=204&uninitcode=204"

# What each value set must render. None for "values" means the chart's defaults.
# max_unavailable: the PodDisruptionBudget's maxUnavailable (None: no budget, one pod).
SETS = {
    "defaults": dict(values=None, replicas=3, tls=True, dev=False, max_unavailable=1),
    "single": dict(values="single-values.yaml", replicas=1, tls=True, dev=False, affinity=False,
                   max_unavailable=None),
    "dev": dict(values="dev-values.yaml", replicas=1, tls=False, dev=True,
                max_unavailable=None),
    "notls": dict(values="notls-values.yaml", replicas=3, tls=False, dev=False,
                  max_unavailable=1),
    "ingress": dict(values="ingress-values.yaml", replicas=3, tls=True, dev=False, ingress=True,
                    max_unavailable=1),
    "servername": dict(values="servername-values.yaml", replicas=3, tls=True, dev=False,
                       servername=f"{RELEASE}-coffer.{NAMESPACE}.svc", max_unavailable=1),
    "five": dict(
        values="five-values.yaml",
        replicas=5,
        tls=True,
        dev=False,
        # Set in the values (the chart's default for five would be 2).
        max_unavailable=1,
        fullname="vault",
        node_id=False,
        audit=True,
        liveness=True,
        listen="[::]",
        min_version="tls13",
        update="RollingUpdate",
        service_account=False,
        extra_config='cluster_name      = "prod"',
        tls_secret="vault-server-tls",
    ),
}

RESULTS = {"passed": 0, "failed": 0}


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def step(name, fn, *args):
    """Run one named check; record and print its outcome."""
    try:
        fn(*args)
    except CheckFailed as e:
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {e}", flush=True)
        return False
    except Exception as e:  # a crash in a check is a failure of that check
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        return False
    RESULTS["passed"] += 1
    print(f"ok   {name}", flush=True)
    return True


# ---- rendering and validation ----------------------------------------------------------


def helm_args(chart, spec, extra=()):
    args = []
    if spec.get("values"):
        args += ["-f", os.path.join(chart, "ci", spec["values"])]
    return args + list(extra)


def lint(helm, chart, spec):
    r = run([helm, "lint", "--strict", chart, "--namespace", NAMESPACE] + helm_args(chart, spec))
    check(r.returncode == 0, f"helm lint failed:\n{r.stdout}{r.stderr}")


def render(helm, chart, spec, out_path=None, extra=(), release=RELEASE):
    """`helm template` of a value set (plus `extra` arguments) in NAMESPACE; the rendered
    objects, also written to out_path if given."""
    r = run(
        [helm, "template", release, chart, "--namespace", NAMESPACE]
        + helm_args(chart, spec, extra)
    )
    check(r.returncode == 0, f"helm template failed:\n{r.stderr}")
    if out_path:
        with open(out_path, "w") as f:
            f.write(r.stdout)
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    check(docs, "nothing rendered")
    return docs


def validate(k8s_version, path):
    r = run(["kubernetes-validate", "--strict", "--quiet", "-k", k8s_version, path])
    check(r.returncode == 0, f"kubernetes-validate failed:\n{r.stdout}{r.stderr}")


def validator_rejects_bad_manifests(k8s_version, tmp):
    """The validator itself: a misspelt field and a wrong type must fail."""
    for name, doc in [
        ("unknown-field", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                           "spec": {"portz": []}}),
        ("wrong-type", {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"},
                        "spec": {"replicas": "three", "selector": {}, "serviceName": "x",
                                 "template": {}}}),
    ]:
        path = os.path.join(tmp, f"bad-{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        try:
            validate(k8s_version, path)
        except CheckFailed:
            continue
        raise CheckFailed(f"kubernetes-validate accepted a bad manifest ({name})")


def chart_refuses(helm, chart, sets, needle):
    """`helm template` of the defaults with `sets` fails, naming `needle`."""
    try:
        render(helm, chart, SETS["defaults"], extra=sets)
    except CheckFailed as e:
        check(needle in str(e), f"expected {needle!r} in the error, got:\n{e}")
        return
    raise CheckFailed(f"helm template {' '.join(sets)} should fail")


# ---- assertions on the rendered objects ----------------------------------------------------


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def one(objs, kind):
    items = objs.get(kind, [])
    check(len(items) == 1, f"expected one {kind}, got {len(items)}")
    return items[0]


def retry_join_blocks(config):
    """The leader_api_addr of each retry_join block, in order."""
    blocks = re.findall(r"retry_join\s*\{(.*?)\}", config, re.S)
    addrs = []
    for body in blocks:
        m = re.search(r'leader_api_addr\s*=\s*"([^"]+)"', body)
        check(m, f"retry_join block without leader_api_addr: {body}")
        addrs.append(m.group(1))
    return blocks, addrs


def assert_objects(docs, spec):
    objs = by_kind(docs)
    fullname = spec.get("fullname", f"{RELEASE}-coffer")
    replicas = spec["replicas"]
    tls, dev = spec["tls"], spec["dev"]
    scheme = "https" if tls else "http"
    internal = f"{fullname}-internal"

    for d in docs:
        check(d["metadata"].get("namespace") == NAMESPACE,
              f"{d['kind']}/{d['metadata']['name']} is not in namespace {NAMESPACE}")

    # StatefulSet
    sts = one(objs, "StatefulSet")
    s = sts["spec"]
    check(sts["metadata"]["name"] == fullname, f"StatefulSet name {sts['metadata']['name']}")
    check(s["replicas"] == replicas, f"replicas {s['replicas']} != {replicas}")
    check(s["podManagementPolicy"] == "Parallel", "podManagementPolicy is not Parallel")
    check(s["updateStrategy"]["type"] == spec.get("update", "OnDelete"),
          f"updateStrategy {s['updateStrategy']}")
    check(s["serviceName"] == internal, f"serviceName {s['serviceName']}")
    pod = s["template"]
    pod_labels = pod["metadata"]["labels"]
    selector = s["selector"]["matchLabels"]
    check(all(pod_labels.get(k) == v for k, v in selector.items()),
          "the selector does not match the pod labels")
    ps = pod["spec"]
    check(ps["enableServiceLinks"] is False, "service links are on")
    psc = ps["securityContext"]
    check(psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, f"pod runs as root: {psc}")
    check("fsGroup" in psc, "no fsGroup: the data volume would not be writable")
    containers = ps["containers"]
    check(len(containers) == 1, "expected one container")
    c = containers[0]
    csc = c["securityContext"]
    check(csc["readOnlyRootFilesystem"] is True, "root filesystem is writable")
    check(csc["allowPrivilegeEscalation"] is False, "privilege escalation allowed")
    check(csc["capabilities"]["drop"] == ["ALL"], "capabilities not dropped")
    check(c.get("resources", {}).get("requests"), "no resource requests")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"api": 8200, "cluster": 8201}, f"container ports {ports}")
    env = {e["name"]: e for e in c["env"]}
    check(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
          "POD_NAME does not come from the pod name")
    check(env["VAULT_ADDR"]["value"] == f"{scheme}://127.0.0.1:8200",
          f"VAULT_ADDR {env['VAULT_ADDR']}")
    check(("VAULT_CACERT" in env) == tls, "VAULT_CACERT present iff TLS")
    probe = c["readinessProbe"]["httpGet"]
    check(probe["path"] == READINESS_PATH, f"readiness path {probe['path']}")
    check(probe["scheme"] == scheme.upper() and probe["port"] == "api", f"readiness {probe}")
    check(("livenessProbe" in c) == spec.get("liveness", False), "liveness probe presence")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in ps["volumes"]}
    check(set(mounts) <= set(volumes) | {"data", "audit"}, f"mounts without volumes: {mounts}")
    check(mounts.get("home") == "/home/coffer" and env["HOME"]["value"] == "/home/coffer",
          "HOME is not on a writable volume")
    if spec.get("affinity", True):
        required = ps["affinity"]
        check("podAntiAffinity" in required, "no pod anti-affinity")
        terms = required["podAntiAffinity"].get("requiredDuringSchedulingIgnoredDuringExecution")
        if terms:
            sel = terms[0]["labelSelector"]["matchLabels"]
            check(all(pod_labels.get(k) == v for k, v in sel.items()),
                  "the anti-affinity selector does not match the pods")
    else:
        check("affinity" not in ps, "affinity rendered although disabled")
    claims = [t["metadata"]["name"] for t in s.get("volumeClaimTemplates", [])]
    if dev:
        check(c["args"] == ["server", "-dev", "-dev-listen-address=0.0.0.0:8200"],
              f"dev args {c['args']}")
        check(claims == [], "dev mode has volume claims")
        check("config" not in volumes, "dev mode mounts a config")
        check(env["VAULT_DEV_ROOT_TOKEN_ID"]["value"] == "dev-only-token", "dev root token")
        check("ConfigMap" not in objs, "dev mode renders a ConfigMap")
    else:
        check(c["args"] == ["server", "-config=/coffer/config/$(POD_NAME).hcl"],
              f"args {c['args']}")
        check(volumes["config"]["configMap"]["name"] == f"{fullname}-config", "config volume")
        check(mounts["config"] == "/coffer/config", "config mount")
        expected_claims = ["audit", "data"] if spec.get("audit") else ["data"]
        check(sorted(claims) == expected_claims, f"volume claims {claims}")
        check(pod["metadata"]["annotations"].get("checksum/config"), "no config checksum")
    if tls:
        check(volumes["tls"]["secret"]["secretName"] == spec.get("tls_secret", "coffer-tls"),
              "tls secret")
        check(mounts["tls"] == "/coffer/tls", "tls mount")
    else:
        check("tls" not in volumes, "TLS secret mounted with TLS off")

    # Per-pod configuration files
    if not dev:
        cm = one(objs, "ConfigMap")
        files = cm["data"]
        pods = [f"{fullname}-{i}" for i in range(replicas)]
        check(sorted(files) == sorted(f"{p}.hcl" for p in pods),
              f"config files {sorted(files)} != one per pod")
        host = lambda p: f"{p}.{internal}.{NAMESPACE}.svc"  # noqa: E731
        listen = spec.get("listen", "0.0.0.0")
        check(mounts["data"] == "/coffer/data", "the data volume is not at the raft path")
        for p in pods:
            config = files[f"{p}.hcl"]
            check(config.count("{") == config.count("}"), f"{p}: unbalanced braces")
            check(f'api_addr     = "{scheme}://{host(p)}:8200"' in config, f"{p}: api_addr")
            check(f'cluster_addr = "https://{host(p)}:8201"' in config, f"{p}: cluster_addr")
            check(f'address         = "{listen}:8200"' in config, f"{p}: listener address")
            check(f'cluster_address = "{listen}:8201"' in config, f"{p}: cluster_address")
            check('path    = "/coffer/data"' in config, f"{p}: raft path")
            check((f'node_id = "{p}"' in config) == spec.get("node_id", True), f"{p}: node_id")
            blocks, addrs = retry_join_blocks(config)
            check(len(blocks) == replicas - 1,
                  f"{p}: {len(blocks)} retry_join blocks, expected {replicas - 1}")
            expected = sorted(f"{scheme}://{host(o)}:8200" for o in pods if o != p)
            check(sorted(addrs) == expected, f"{p}: retry_join targets {addrs}")
            if tls:
                check('tls_cert_file   = "/coffer/tls/tls.crt"' in config, f"{p}: tls_cert_file")
                check('tls_key_file    = "/coffer/tls/tls.key"' in config, f"{p}: tls_key_file")
                check(f'tls_min_version = "{spec.get("min_version", "tls12")}"' in config,
                      f"{p}: tls_min_version")
                check(all(re.search(r'leader_ca_cert_file\s*=\s*"/coffer/tls/ca.crt"', b)
                          for b in blocks), f"{p}: retry_join without the CA")
                names = [re.findall(r'leader_tls_servername\s*=\s*"([^"]*)"', b) for b in blocks]
                want = [[spec["servername"]] if spec.get("servername") else []] * len(blocks)
                check(names == want, f"{p}: leader_tls_servername {names}, expected {want}")
                check("tls_disable" not in config, f"{p}: tls_disable with TLS on")
            else:
                check("tls_disable     = true" in config, f"{p}: TLS not disabled")
                check("tls_cert_file" not in config and "leader_ca_cert_file" not in config
                      and "leader_tls_servername" not in config, f"{p}: TLS files with TLS off")
            if spec.get("extra_config"):
                check(spec["extra_config"] in config, f"{p}: extraConfig missing")

    # Services
    services = {svc["metadata"]["name"]: svc for svc in objs.get("Service", [])}
    check(set(services) == {fullname, internal}, f"services {sorted(services)}")
    headless = services[internal]["spec"]
    check(headless["clusterIP"] == "None", "the internal service is not headless")
    check(headless["publishNotReadyAddresses"] is True, "not-ready pods are not published")
    check(sorted(p["port"] for p in headless["ports"]) == [8200, 8201], "headless ports")
    for svc in services.values():
        check(svc["spec"]["selector"] == selector, f"{svc['metadata']['name']}: selector")
    api = services[fullname]["spec"]
    check([(p["port"], p["targetPort"]) for p in api["ports"]] == [(8200, "api")], "API port")

    # PodDisruptionBudget: keeps a quorum
    pdbs = objs.get("PodDisruptionBudget", [])
    if spec["max_unavailable"] is not None:
        check(len(pdbs) == 1, "no PodDisruptionBudget")
        max_unavailable = pdbs[0]["spec"]["maxUnavailable"]
        check(max_unavailable == spec["max_unavailable"],
              f"maxUnavailable {max_unavailable}, expected {spec['max_unavailable']}")
        check(replicas - max_unavailable > replicas // 2, "the budget allows losing quorum")
        check(pdbs[0]["spec"]["selector"]["matchLabels"] == selector, "PDB selector")
    else:
        check(not pdbs, "a PodDisruptionBudget where none is expected (for a single pod it "
              "blocks node drains)")

    # Ingress
    ingresses = objs.get("Ingress", [])
    check(len(ingresses) == (1 if spec.get("ingress") else 0), "ingress presence")
    for ing in ingresses:
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                check(backend == {"name": fullname, "port": {"number": 8200}},
                      f"ingress backend {backend}")

    # ServiceAccount
    sas = objs.get("ServiceAccount", [])
    if spec.get("service_account", True):
        check(len(sas) == 1 and sas[0]["metadata"]["name"] == ps["serviceAccountName"],
              "service account")
        check(sas[0]["automountServiceAccountToken"] is False, "token automount on")
    else:
        check(not sas and ps["serviceAccountName"] == "existing-sa", "existing service account")


def readme_example_is_rendered(helm, chart):
    """The chart README's example file is what the chart renders for coffer-1 of release
    coffer in namespace secrets (blank-line whitespace aside)."""
    with open(os.path.join(chart, "README.md")) as f:
        blocks = re.findall(r"```hcl\n(.*?)```", f.read(), re.S)
    check(len(blocks) == 1, "expected one hcl example in the README")
    cm = one(by_kind(render(helm, chart, SETS["defaults"], release="coffer")), "ConfigMap")
    rendered = cm["data"]["coffer-1.hcl"]
    norm = lambda t: [ln.rstrip() for ln in t.strip().splitlines() if not ln.startswith("#")]  # noqa: E731
    check(norm(blocks[0]) == norm(rendered),
          f"the README's example differs from the rendered coffer-1.hcl:\n{rendered}")


def checksum_follows_config(helm, chart, tmp):
    a = render(helm, chart, SETS["defaults"], os.path.join(tmp, "sum-a.yaml"))
    b = render(helm, chart, SETS["defaults"], os.path.join(tmp, "sum-b.yaml"),
               ["--set", "server.logLevel=debug"])
    sums = [one(by_kind(d), "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"] for d in (a, b)]
    check(sums[0] != sums[1], "changing the config does not change the pods' checksum")


# ---- live run of the rendered cluster -------------------------------------------------------


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def readme_certificate_recipe(chart):
    """The openssl commands of the chart README's "TLS" step, up to the kubectl line."""
    with open(os.path.join(chart, "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"^( *)```sh\n(.*?)^\1```", text, re.S | re.M)
    recipe = [body for indent, body in blocks if "openssl req -x509" in body]
    check(len(recipe) == 1, "the README has no (or several) openssl certificate recipes")
    indent = next(indent for indent, body in blocks if "openssl req -x509" in body)
    lines = []
    for line in recipe[0].splitlines():
        line = line[len(indent):] if line.startswith(indent) else line
        if line.startswith("kubectl"):
            break
        lines.append(line)
    check(lines and lines[0].startswith("NAME="), "the recipe does not start with NAME=...")
    return lines


def make_certificates(chart, tls_dir, fullname):
    """Run the certificate recipe of helm/coffer/README.md ("TLS") as written, for this
    release name and namespace."""
    check(shutil.which("openssl"), "openssl is not installed")
    lines = readme_certificate_recipe(chart)
    lines[0] = f"NAME={fullname} NS={NAMESPACE}"
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=tls_dir,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"the README's certificate recipe failed:\n{r.stderr}")
    for name in ("ca.crt", "tls.crt", "tls.key"):
        check(os.path.exists(os.path.join(tls_dir, name)), f"the recipe made no {name}")


class LiveCluster:
    def __init__(self, chart, coffer, docs, tmp):
        self.chart = chart
        self.coffer = os.path.abspath(coffer)
        self.tmp = tmp
        objs = by_kind(docs)
        self.sts = one(objs, "StatefulSet")
        container = self.sts["spec"]["template"]["spec"]["containers"][0]
        # Dev mode (`server -dev`) has no config files.
        self.dev = "-dev" in container["args"]
        self.files = {} if self.dev else one(objs, "ConfigMap")["data"]
        self.fullname = self.sts["metadata"]["name"]
        self.internal = self.sts["spec"]["serviceName"]
        self.pods = [f"{self.fullname}-{i}" for i in range(self.sts["spec"]["replicas"])]
        self.tls = any(e["name"] == "VAULT_CACERT" for e in container["env"])
        ports = free_ports(2 * len(self.pods))
        self.api = {p: ports[2 * i] for i, p in enumerate(self.pods)}
        self.cluster = {p: ports[2 * i + 1] for i, p in enumerate(self.pods)}
        self.tls_dir = os.path.join(tmp, "tls")
        self.config_dir = os.path.join(tmp, "config")
        os.makedirs(self.tls_dir)
        os.makedirs(self.config_dir)
        self.procs = {}
        self.logs = {}
        self.keys = []
        self.token = None

    def host(self, pod):
        return f"{pod}.{self.internal}.{NAMESPACE}.svc"

    def map_text(self, text, pod=None):
        """Pod DNS names and ports -> 127.0.0.1 ports; /coffer paths -> the temp dir."""
        for p in self.pods:
            text = text.replace(f"{self.host(p)}:8200", f"127.0.0.1:{self.api[p]}")
            text = text.replace(f"{self.host(p)}:8201", f"127.0.0.1:{self.cluster[p]}")
        if pod:
            text = text.replace("0.0.0.0:8200", f"127.0.0.1:{self.api[pod]}")
            text = text.replace("0.0.0.0:8201", f"127.0.0.1:{self.cluster[pod]}")
            text = text.replace("127.0.0.1:8200", f"127.0.0.1:{self.api[pod]}")
            text = text.replace("/coffer/data", os.path.join(self.tmp, pod, "data"))
            text = text.replace("/home/coffer", os.path.join(self.tmp, pod, "home"))
        text = text.replace("/coffer/tls", self.tls_dir)
        text = text.replace("/coffer/config", self.config_dir)
        return text

    def prepare(self):
        if self.tls:
            make_certificates(self.chart, self.tls_dir, self.fullname)
        for p in self.pods:
            os.makedirs(os.path.join(self.tmp, p, "home"))
            if self.dev:
                continue
            config = self.map_text(self.files[f"{p}.hcl"], p)
            check("/coffer/" not in config and ".svc:" not in config and "0.0.0.0" not in config,
                  f"{p}: an address or path was left unmapped:\n{config}")
            with open(os.path.join(self.config_dir, f"{p}.hcl"), "w") as f:
                f.write(config)

    def env(self, pod):
        """The container's env from the StatefulSet, as Kubernetes would set it."""
        container = self.sts["spec"]["template"]["spec"]["containers"][0]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = self.map_text(e["value"], pod)
            elif e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
                env[e["name"]] = pod
        return env

    def args(self, pod):
        container = self.sts["spec"]["template"]["spec"]["containers"][0]
        env = self.env(pod)
        args = []
        for a in container["args"]:
            a = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a)  # Kubernetes expansion
            args.append(self.map_text(a, pod))
        return args

    def start(self):
        for p in self.pods:
            log = open(os.path.join(self.tmp, f"{p}.log"), "w")
            self.logs[p] = log.name
            self.procs[p] = subprocess.Popen(
                [self.coffer] + self.args(p), env=self.env(p), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def check_clean_exits(self):
        """After stop(): every pod exited 0 on SIGTERM."""
        for p, proc in self.procs.items():
            check(proc.returncode == 0,
                  f"{p} exited {proc.returncode} on SIGTERM:\n{self.log_text(p)}")

    def log_text(self, pod):
        with open(self.logs[pod]) as f:
            return f.read()

    def all_logs(self):
        return "\n".join(f"--- {p}\n{self.log_text(p)[-4000:]}" for p in self.pods)

    def cli(self, pod, *args, stdin=None, token=False):
        env = self.env(pod)
        if token:
            env["VAULT_TOKEN"] = self.token
        return subprocess.run([self.coffer] + list(args), env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    def probe(self, pod, server_hostname="127.0.0.1"):
        """The readiness probe's request (with TLS, verifying the certificate for
        server_hostname); returns the status code."""
        request = (f"GET {READINESS_PATH} HTTP/1.1\r\nHost: {server_hostname}\r\n"
                   "Connection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", self.api[pod]), timeout=5) as sock:
            if self.tls:
                ctx = ssl.create_default_context(cafile=os.path.join(self.tls_dir, "ca.crt"))
                with ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
                    tls.sendall(request)
                    head = tls.recv(64).decode(errors="replace")
            else:
                sock.sendall(request)
                head = sock.recv(64).decode(errors="replace")
        return int(head.split()[1])

    def wait(self, what, fn, timeout=60):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for p, proc in self.procs.items():
                check(proc.poll() is None, f"{p} exited ({proc.returncode}) while waiting for "
                      f"{what}:\n{self.all_logs()}")
            try:
                if fn():
                    return
            except (OSError, ssl.SSLError, ValueError, IndexError) as e:
                last = e
            time.sleep(0.3)
        raise CheckFailed(f"timed out waiting for {what} (last error: {last}):\n{self.all_logs()}")

    def status(self, pod):
        r = self.cli(pod, "status", "-format=json")
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {})


def live_cluster(helm, chart, coffer, tmp, set_name):
    docs = render(helm, chart, SETS[set_name], os.path.join(tmp, f"live-{set_name}.yaml"))
    c = LiveCluster(chart, coffer, docs, os.path.join(tmp, f"live-{set_name}"))
    check(c.tls == SETS[set_name]["tls"], "TLS as rendered differs from the value set")
    c.prepare()
    try:
        c.start()
        # Every pod answers the readiness probe while uninitialised (uninitcode=204), with a
        # certificate valid for its own DNS name and for 127.0.0.1.
        for p in c.pods:
            c.wait(f"{p} to answer the readiness probe", lambda p=p: c.probe(p) == 204)
            if c.tls:
                check(c.probe(p, server_hostname=c.host(p)) == 204,
                      f"{p}: cert for {c.host(p)}")
                check(c.probe(p, server_hostname=f"{c.fullname}.{NAMESPACE}.svc") == 204,
                      f"{p}: cert for the API service")
        for p in c.pods:
            for bad in ("unknown or unsupported field", "is not supported by coffer",
                        "set more than once"):
                check(bad not in c.log_text(p), f"{p} warned about its config:\n{c.log_text(p)}")
        first, *others = c.pods
        # README step 1: operator init on the first pod.
        r = c.cli(first, "operator", "init", "-key-shares=3", "-key-threshold=2",
                  "-format=json")
        check(r.returncode == 0, f"operator init: {r.returncode} {r.stderr}")
        init = json.loads(r.stdout)
        c.keys, c.token = init["unseal_keys_b64"], init["root_token"]
        check(c.probe(first) == 204, "a sealed pod fails the readiness probe")
        code, _ = c.status(first)
        check(code == 2, f"status of a sealed pod exits {code}, expected 2")
        # README step 2: unseal it (one share per command; the prompt reads stdin when it
        # is not a terminal).
        for key in c.keys[:2]:
            r = c.cli(first, "operator", "unseal", stdin=key + "\n")
            check(r.returncode == 0, f"unseal {first}: {r.stderr}")
        c.wait(f"{first} to become active",
               lambda: c.status(first)[0] == 0 and c.probe(first) == 200)
        # README step 3: the others join through retry_join and wait for the keys.
        for p in others:
            c.wait(f"{p} to get its join challenge (retry_join)",
                   lambda p=p: c.status(p)[1].get("initialized") is True)
            for key in c.keys[:2]:
                r = c.cli(p, "operator", "unseal", key)
                check(r.returncode == 0, f"unseal {p}: {r.stderr}")
            c.wait(f"{p} to unseal", lambda p=p: c.status(p)[0] == 0)
        # README step 4: log in on the first pod (the token helper writes to HOME, a
        # volume of its own), then every pod is a voter under its pod name.
        r = c.cli(first, "login", stdin=c.token + "\n")
        check(r.returncode == 0, f"login: {r.stderr}")

        def voters():
            r = c.cli(first, "operator", "raft", "list-peers", "-format=json")
            if r.returncode != 0:
                return False
            servers = json.loads(r.stdout)["data"]["config"]["servers"]
            return (sorted(s["node_id"] for s in servers) == c.pods
                    and all(s["voter"] for s in servers))
        c.wait("three voters named after the pods", voters)
        # Secrets written through a standby are read back on another pod.
        r = c.cli(others[0], "secrets", "enable", "-path=secret", "-version=2", "kv",
                  token=True)
        check(r.returncode == 0, f"secrets enable on a standby: {r.stderr}")
        r = c.cli(others[1], "kv", "put", "secret/helm", "answer=42", token=True)
        check(r.returncode == 0, f"kv put on a standby: {r.stderr}")
        c.wait("the secret on the first pod", lambda: c.cli(
            first, "kv", "get", "-field=answer", "secret/helm", token=True).stdout == "42")
        for p in c.pods:
            check(c.probe(p) == 200, f"{p}: an unsealed pod is not ready")
    finally:
        c.stop()
    c.check_clean_exits()


def live_dev(helm, chart, coffer, tmp):
    """The dev set's pod: its args and env as rendered, then a secret written and read
    with the rendered dev root token."""
    docs = render(helm, chart, SETS["dev"], os.path.join(tmp, "live-dev.yaml"))
    c = LiveCluster(chart, coffer, docs, os.path.join(tmp, "live-dev"))
    check(c.dev and not c.tls and c.pods == [f"{RELEASE}-coffer-0"],
          f"the dev render is not one plain-HTTP dev pod: {c.pods}")
    pod = c.pods[0]
    c.token = c.env(pod)["VAULT_DEV_ROOT_TOKEN_ID"]
    c.prepare()
    try:
        c.start()
        c.wait("the dev server to unseal", lambda: c.status(pod)[0] == 0)
        r = c.cli(pod, "kv", "put", "secret/helm", "answer=42", token=True)
        check(r.returncode == 0, f"kv put with the chart's dev root token: {r.stderr}")
        r = c.cli(pod, "kv", "get", "-field=answer", "secret/helm", token=True)
        check(r.stdout == "42", f"kv get: {r.stdout!r} {r.stderr}")
    finally:
        c.stop()
    c.check_clean_exits()


# ---- main ----------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--helm", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument("--coffer", help="a coffer binary for the live run")
    args = ap.parse_args()
    helm, chart, k8s = args.helm, args.chart, args.kubernetes_version
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="coffer-helm-check-") as tmp:
        step("kubernetes-validate rejects bad manifests", validator_rejects_bad_manifests, k8s,
             tmp)
        for name, spec in SETS.items():
            step(f"{name}: helm lint", lint, helm, chart, spec)
            out = os.path.join(tmp, f"{name}.yaml")
            rendered = []
            ok = step(f"{name}: helm template",
                      lambda: rendered.extend(render(helm, chart, spec, out)))
            if not ok:
                continue
            step(f"{name}: kubernetes-validate --strict -k {k8s}", validate, k8s, out)
            step(f"{name}: rendered objects", assert_objects, rendered, spec)
        step("the config checksum follows the config", checksum_follows_config, helm, chart, tmp)
        step("the README's example config is the rendered one", readme_example_is_rendered,
             helm, chart)
        for bad, needle in [("server.ha.replicas=0", "server.ha.replicas"),
                            ("tls.minVersion=tls11", "tls.minVersion"),
                            ("server.logLevel=loud", "server.logLevel"),
                            ("server.updateStrategyType=Rolling", "server.updateStrategyType")]:
            step(f"{bad} is refused", chart_refuses, helm, chart, ["--set", bad], needle)
        if args.coffer:
            digest = hashlib.sha256(open(args.coffer, "rb").read()).hexdigest()[:12]
            print(f"live run with {args.coffer} (sha256 {digest}...)", flush=True)
            for set_name in ("defaults", "notls", "servername"):
                step(f"live ({set_name}): 3 pods from the rendered chart, init, unseal, "
                     "retry_join, login, list-peers, kv", live_cluster, helm, chart,
                     args.coffer, tmp, set_name)
            step("live: the dev pod's args and root token", live_dev, helm, chart,
                 args.coffer, tmp)
        else:
            print("live run skipped: no coffer binary (build one, or set COFFER_BIN)")
    print(f"helm-check took {time.monotonic() - started:.1f}s")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
