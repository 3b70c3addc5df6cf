#!/usr/bin/env python3
"""Offline checks of the rendered Kubernetes manifests (kubectl kustomize k8s/overlays/<env>).

  manifests.py crds RENDERED...        GKE custom resources against their CRD schemas
  manifests.py autopilot RENDERED...   GKE Autopilot's own admission rules and resource rules
  manifests.py env FIRESFU RENDERED... every variable a firesfu container gets is a flag of its
                                       subcommand (`firesfu <cmd> --help`), every required flag
                                       is set, and the broadcast grace periods fit together

Each prints what it checked and exits non-zero on the first run with a failure.
"""
import re
import subprocess
import sys

import jsonschema
import yaml

# --- the GKE custom resources firesfu uses, from their CRDs / API types ------------------------
# networking.gke.io/v1 ManagedCertificate: GoogleCloudPlatform/gke-managed-certs
#   deploy/managedcertificates-crd.yaml; cloud.google.com/v1 BackendConfig and
# networking.gke.io/v1beta1 FrontendConfig: kubernetes/ingress-gce pkg/apis/*/types.go;
# secrets-store.csi.x-k8s.io/v1 SecretProviderClass: kubernetes-sigs/secrets-store-csi-driver.
INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def obj(props, required=()):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


META = {"type": "object", "required": ["name"]}
CRD_SCHEMAS = {
    ("networking.gke.io/v1", "ManagedCertificate"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({"domains": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
            "type": "string", "maxLength": 63,
            "pattern": r"^(([a-z0-9]+|[a-z0-9][-a-z0-9]*[a-z0-9])\.)+[a-z][-a-z0-9]*[a-z0-9]$"}}}, ["domains"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("cloud.google.com/v1", "BackendConfig"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({
            "iap": {"type": "object"}, "cdn": {"type": "object"},
            "securityPolicy": obj({"name": STR}, ["name"]),
            "timeoutSec": INT,
            "connectionDraining": obj({"drainingTimeoutSec": INT}),
            "sessionAffinity": obj({"affinityType": {"enum": ["CLIENT_IP", "GENERATED_COOKIE", "NONE"]},
                                    "affinityCookieTtlSec": INT}),
            "customRequestHeaders": obj({"headers": {"type": "array", "items": STR}}),
            "customResponseHeaders": obj({"headers": {"type": "array", "items": STR}}),
            "healthCheck": obj({"checkIntervalSec": INT, "timeoutSec": INT, "healthyThreshold": INT,
                                "unhealthyThreshold": INT, "type": {"enum": ["HTTP", "HTTPS", "HTTP2"]},
                                "port": INT, "requestPath": {"type": "string", "pattern": "^/"}}),
            "logging": obj({"enable": BOOL, "sampleRate": {"type": "number", "minimum": 0, "maximum": 1}}),
        }),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("networking.gke.io/v1beta1", "FrontendConfig"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({"sslPolicy": STR,
                     "redirectToHttps": obj({"enabled": BOOL, "responseCodeName": {"enum": [
                         "MOVED_PERMANENTLY_DEFAULT", "FOUND", "TEMPORARY_REDIRECT", "PERMANENT_REDIRECT"]}},
                         ["enabled"])}),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({"provider": STR,
                     "parameters": {"type": "object", "additionalProperties": STR},
                     "secretObjects": {"type": "array"}}, ["provider"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}
# The GKE Secret Manager add-on's parameters (provider "gke").
GKE_SECRET = obj({"resourceName": {"type": "string",
                                   "pattern": r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$"},
                  "path": {"type": "string", "pattern": r"^[^/]"}}, ["resourceName", "path"])


def load(paths):
    docs = []
    for p in paths:
        with open(p) as f:
            docs.extend((p, d) for d in yaml.safe_load_all(f) if d)
    return docs


def check_crds(docs):
    failures, checked = [], 0
    for path, d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key not in CRD_SCHEMAS:
            continue
        checked += 1
        name = f"{path}: {d['kind']}/{d['metadata']['name']}"
        for err in jsonschema.Draft7Validator(CRD_SCHEMAS[key]).iter_errors(d):
            failures.append(f"{name}: {'.'.join(map(str, err.absolute_path))}: {err.message}")
        if d["kind"] == "SecretProviderClass" and d["spec"].get("provider") == "gke":
            for s in yaml.safe_load(d["spec"].get("parameters", {}).get("secrets", "")) or []:
                for err in jsonschema.Draft7Validator(GKE_SECRET).iter_errors(s):
                    failures.append(f"{name}: secrets: {err.message}")
    print(f"crds: {checked} GKE custom resources validated against their CRD schemas")
    return failures


# --- Autopilot ------------------------------------------------------------------------------
# General-purpose compute class (the default): per-pod requests of at least 50m CPU and 52 MiB
# memory, at most 30 vCPU and 110 GiB, memory:CPU between 1 GiB and 6.5 GiB per vCPU;
# ephemeral storage 10 MiB to 10 GiB. Autopilot bills requests and raises a request that is too
# small (so a too-small request hides a bill); it refuses hostNetwork, hostPort, privileged
# containers and capabilities beyond its default set.
CPU_MIN, CPU_MAX = 0.05, 30.0
MEM_MIN, MEM_MAX = 52 * 2**20, 110 * 2**30
RATIO_MIN, RATIO_MAX = 1.0, 6.5
EPH_MIN, EPH_MAX = 10 * 2**20, 10 * 2**30
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def quantity(q):
    q = str(q)
    if q.endswith("m"):
        return float(q[:-1]) / 1000
    for suffix, factor in UNITS.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q)


def pod_templates(docs):
    for path, d in docs:
        kind = d.get("kind")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield path, f"{kind}/{d['metadata']['name']}", d["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield path, f"CronJob/{d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield path, f"Pod/{d['metadata']['name']}", d["spec"]


def check_autopilot(docs):
    failures, rows = [], []
    for path, name, spec in pod_templates(docs):
        where = f"{path}: {name}"
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                failures.append(f"{where}: {flag} is refused by Autopilot")
        for v in spec.get("volumes", []):
            if "hostPath" in v:
                failures.append(f"{where}: hostPath volume {v['name']} is refused by Autopilot")
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            failures.append(f"{where}: securityContext.runAsNonRoot is not set")
        inits = spec.get("initContainers", [])
        sidecars = [c for c in inits if c.get("restartPolicy") == "Always"]
        plain_inits = [c for c in inits if c.get("restartPolicy") != "Always"]
        totals = {"cpu": 0.0, "memory": 0.0, "ephemeral-storage": 0.0}
        for c in spec.get("containers", []) + inits:
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            for port in c.get("ports", []):
                if "hostPort" in port:
                    failures.append(f"{cw}: hostPort {port['hostPort']} is refused by Autopilot")
            if sc.get("privileged"):
                failures.append(f"{cw}: privileged is refused by Autopilot")
            if sc.get("capabilities", {}).get("add"):
                failures.append(f"{cw}: added capabilities {sc['capabilities']['add']}")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                failures.append(f"{cw}: capabilities are not all dropped")
            if sc.get("allowPrivilegeEscalation") is not False:
                failures.append(f"{cw}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                failures.append(f"{cw}: readOnlyRootFilesystem is not true")
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                failures.append(f"{cw}: runAsNonRoot is not set")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
            if seccomp != "RuntimeDefault":
                failures.append(f"{cw}: seccompProfile is {seccomp}, not RuntimeDefault")
            res = c.get("resources", {})
            req, lim = res.get("requests", {}), res.get("limits", {})
            for r in ("cpu", "memory", "ephemeral-storage"):
                if r not in req:
                    failures.append(f"{cw}: no {r} request (Autopilot would choose, and bill, one)")
                if r not in lim:
                    failures.append(f"{cw}: no {r} limit")
                elif r in req and quantity(lim[r]) < quantity(req[r]):
                    failures.append(f"{cw}: {r} limit below its request")
            if c in plain_inits:
                continue
            for r in totals:
                totals[r] += quantity(req.get(r, 0))
        # Ordinary init containers run before the others: the pod needs the larger of the two.
        for c in plain_inits:
            req = c.get("resources", {}).get("requests", {})
            for r in totals:
                totals[r] = max(totals[r], quantity(req.get(r, 0)) + sum(
                    quantity(s.get("resources", {}).get("requests", {}).get(r, 0)) for s in sidecars))
        cpu, mem, eph = totals["cpu"], totals["memory"], totals["ephemeral-storage"]
        ratio = (mem / 2**30) / cpu if cpu else float("inf")
        if not CPU_MIN <= cpu <= CPU_MAX:
            failures.append(f"{where}: pod CPU request {cpu:g} outside [{CPU_MIN}, {CPU_MAX}]")
        if not MEM_MIN <= mem <= MEM_MAX:
            failures.append(f"{where}: pod memory request {mem / 2**20:g} MiB outside [52 MiB, 110 GiB]")
        if not RATIO_MIN <= ratio <= RATIO_MAX:
            failures.append(f"{where}: memory:CPU {ratio:.2f} GiB per vCPU outside [{RATIO_MIN}, {RATIO_MAX}] "
                            "(Autopilot would raise the smaller request)")
        if not EPH_MIN <= eph <= EPH_MAX:
            failures.append(f"{where}: pod ephemeral storage {eph / 2**20:g} MiB outside [10 MiB, 10 GiB]")
        rows.append(f"  {path.split('/')[-1]:<10} {name:<32} cpu {cpu:>5g}  memory {mem / 2**20:>6g} MiB  "
                    f"ratio {ratio:.2f} GiB/vCPU  ephemeral {eph / 2**20:g} MiB")
    print("autopilot: pod requests (what Autopilot bills per replica):")
    print("\n".join(rows))
    return failures


# --- env vars against the binary's flags -------------------------------------------------------
# Standard OpenTelemetry SDK variables (docs/telemetry.md, .env.example), read by the SDK rather
# than by clap.
OTEL_SDK = re.compile(r"^OTEL_[A-Z_]+$")


def flags_of(binary, command):
    out = subprocess.run([binary, command, "--help"], capture_output=True, text=True, check=True).stdout
    # Pair every option line with the [env: ...] that follows it (clap wraps long help).
    envs, current = {}, None
    for line in out.splitlines():
        m = re.match(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", line)
        if m:
            current = m.group(1)
        e = re.search(r"\[env: ([A-Z0-9_]+)=", line)
        if e and current:
            envs[current] = e.group(1)
    usage = re.search(r"^Usage: .*$", out, re.M).group(0)
    required = [envs[f] for f in re.findall(r"(--[a-z0-9-]+) <", usage) if f in envs]
    return set(envs.values()), required


def check_env(binary, docs):
    failures = []
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in docs if d.get("kind") == "ConfigMap"}
    flags = {}
    for path, name, spec in pod_templates(docs):
        for c in spec.get("containers", []):
            args = c.get("args") or c.get("command") or []
            if not args or args[0] not in ("broadcast", "sidecar", "monitor"):
                continue
            cmd = args[0]
            if cmd not in flags:
                flags[cmd] = flags_of(binary, cmd)
            known, required = flags[cmd]
            env = {}
            for e in c.get("env", []):
                env[e["name"]] = e.get("value", "(from " + ",".join(e.get("valueFrom", {})) + ")")
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef", {}).get("name")
                if ref not in configmaps:
                    failures.append(f"{path}: {name}: envFrom ConfigMap {ref} is not in the manifests")
                    continue
                env.update(configmaps[ref])
            unknown = sorted(v for v in env if v not in known and not OTEL_SDK.match(v))
            otel = sorted(v for v in env if v not in known and OTEL_SDK.match(v))
            missing = [r for r in required if not env.get(r)]
            for v in unknown:
                failures.append(f"{path}: {name}: {v} is not a flag of `firesfu {cmd}`")
            for r in missing:
                failures.append(f"{path}: {name}: required {r} is not set")
            print(f"  {path.split('/')[-1]:<10} {name:<28} firesfu {cmd:<9}: {len(env)} variables, "
                  f"{len(env) - len(unknown) - len(otel)} flags + {len(otel)} OpenTelemetry SDK "
                  f"({', '.join(otel) or '-'}); required {', '.join(required)}: "
                  + ("set" if not missing else "MISSING " + ", ".join(missing))
                  + ("" if not unknown else "; NOT FLAGS: " + ", ".join(unknown)))
            if cmd == "broadcast":
                drain = int(env.get("FIRESFU_DRAIN_GRACE_SECS", 60))
                shutdown = int(env.get("FIRESFU_SHUTDOWN_GRACE_SECS", 10))
                grace = spec.get("terminationGracePeriodSeconds", 30)
                ok = grace >= drain + shutdown
                print(f"  {'':<10} {name:<28} terminationGracePeriodSeconds {grace} >= drain {drain} + shutdown {shutdown}: "
                      + ("yes" if ok else "NO"))
                if not ok:
                    failures.append(f"{path}: {name}: terminationGracePeriodSeconds {grace} < "
                                    f"FIRESFU_DRAIN_GRACE_SECS + FIRESFU_SHUTDOWN_GRACE_SECS ({drain + shutdown})")
    print("env: the variables of every firesfu container against `firesfu <cmd> --help`")
    return failures


def main(argv):
    what = argv[1]
    if what == "env":
        binary, paths = argv[2], argv[3:]
        failures = check_env(binary, load(paths))
    else:
        docs = load(argv[2:])
        failures = {"crds": check_crds, "autopilot": check_autopilot}[what](docs)
    for f in failures:
        print("FAIL:", f)
    print(f"{what}: " + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
