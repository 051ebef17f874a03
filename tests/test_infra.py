"""The cluster manifests under infra/: they parse, have what their kind needs, pin their images to the
Ray version of pyproject.toml, hold no literal credentials, and run entrypoints that exist.

Plain YAML checks, no Ray and no Kubernetes: the structure of each kind by JSON Schema
(tests/infra_schemas.yaml, the `jsonschema` package), the rest (cross-field rules, pinned images,
credentials, entrypoints) by functions returning a list of problems; the `*_catches_*` tests feed
them a broken copy of a real manifest to show that they can fail.
"""
from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
NIGHTLY_CONFIG = "configs/nightly.yaml"   # written by the nightly work; may not exist yet
EXPECTED = ["Dockerfile", "README.md", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml",
            "kuberay/nightly-cronjob.yaml", "aws/cluster.yaml"]
AWS_CREDENTIAL_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def ray_pin() -> str:
    for dep in _pyproject()["project"]["dependencies"]:
        m = re.fullmatch(r"\s*ray(\[[^\]]*\])?\s*==\s*([0-9][0-9.]*)\s*", dep)
        if m:
            return m.group(2)
    raise AssertionError("pyproject.toml pins no ray version (ray[...]==X.Y.Z)")


PROJECT_VERSION = _pyproject()["project"]["version"]
RAY_PIN = ray_pin()
YAML_FILES = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------- walking documents

def walk(node, path=""):
    """Every (dotted path, key, value) below `node`, mappings and lists alike."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            yield p, k, v
            yield from walk(v, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            p = f"{path}[{i}]"
            yield p, None, v
            yield from walk(v, p)


def strings(node):
    for p, _, v in walk(node):
        if isinstance(v, str):
            yield p, v


def get(node, dotted: str, default=None):
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


# ---------------------------------------------------------------- images

def image_problem(ref: str, pin: str = RAY_PIN, version: str = PROJECT_VERSION) -> str | None:
    """None when `ref` is pinned (a tag other than latest, or a digest) and, for Ray and interleaf
    images, carries the pinned Ray version; else what is wrong."""
    if not isinstance(ref, str) or not ref.strip() or "$" in ref:
        return f"{ref!r}: not a literal image reference"
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    repo, _, tag = last.partition(":")
    repo = name[: len(name) - len(last)] + repo
    if digest:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return f"{ref}: malformed digest"
    elif not tag:
        return f"{ref}: no tag (an untagged image is `latest`)"
    if tag == "latest":
        return f"{ref}: `latest` is not a version"
    short = repo.rsplit("/", 1)[-1]
    if repo in ("rayproject/ray", "rayproject/ray-ml", "docker.io/rayproject/ray"):
        if not digest and not re.match(re.escape(pin) + r"(-|$)", tag):
            return f"{ref}: Ray image tag must start with the pinned ray {pin}"
    elif short == "interleaf" and not digest:
        m = re.fullmatch(r"(?P<v>[0-9][^-]*)-ray(?P<ray>[0-9.]+)-py311(-gpu)?", tag)
        if not m:
            return f"{ref}: interleaf tags are <version>-ray<ray version>-py311[-gpu]"
        if m["ray"] != pin:
            return f"{ref}: built on ray {m['ray']}, pyproject pins {pin}"
        if m["v"] != version:
            return f"{ref}: project version {m['v']}, pyproject says {version}"
    return None


def yaml_images(doc) -> list[tuple[str, str]]:
    return [(p, v) for p, k, v in walk(doc) if k in ("image", "head_image", "worker_image")]


def dockerfile_images(text: str) -> list[str]:
    """FROM images with ARG defaults substituted (a FROM that stays a variable is reported as such)."""
    args: dict[str, str] = {}
    out = []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"ARG\s+(\w+)=(\S+)", line)
        if m:
            args[m[1]] = m[2].strip("\"'")
        m = re.match(r"FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.I)
        if m:
            out.append(re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v[1], v[0]), m[1]))
    return out


# ---------------------------------------------------------------- credentials

KEY_ID = re.compile(r"(?<![A-Z0-9])(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])")
SECRET_ASSIGN = re.compile(r"(?i)(aws_secret_access_key|secret_?key|aws_session_token)\W{0,3}[:=]\s*[\"']?"
                           r"(?P<v>[A-Za-z0-9/+=]{30,})")


def text_secret_problems(text: str, where: str) -> list[str]:
    out = [f"{where}: an AWS access key id ({m[0][:4]}...)" for m in KEY_ID.finditer(text)]
    out += [f"{where}: a literal secret after {m[1]}" for m in SECRET_ASSIGN.finditer(text)]
    return out


def doc_secret_problems(doc, where: str) -> list[str]:
    """AWS credential variables only from a Secret (valueFrom.secretKeyRef), never a literal value;
    no Secret manifest with data; the same inside runtimeEnvYAML strings."""
    out = []
    if isinstance(doc, dict) and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
        out.append(f"{where}: a Secret with literal data (create it with kubectl, see infra/README.md)")
    for p, k, v in walk(doc):
        if isinstance(v, dict) and v.get("name") in AWS_CREDENTIAL_VARS:
            if "value" in v or not get(v, "valueFrom.secretKeyRef.name"):
                out.append(f"{where}: {p} {v['name']} must come from valueFrom.secretKeyRef")
        if k in AWS_CREDENTIAL_VARS or (isinstance(k, str) and k.lower() in {n.lower() for n in AWS_CREDENTIAL_VARS}):
            if isinstance(v, (str, int)):
                out.append(f"{where}: {p} is a literal credential")
        if k == "runtimeEnvYAML" and isinstance(v, str):
            out += doc_secret_problems(yaml.safe_load(v), f"{where} {p}")
    return out


# ---------------------------------------------------------------- entrypoints

def entrypoint_commands(doc) -> list[tuple[str, list[str]]]:
    """Every `python -m MODULE ...` command in the document's strings, as argv."""
    out = []
    for p, s in strings(doc):
        for m in re.finditer(r"python3?\s+-m\s+", s):
            rest = s[m.start():]
            rest = re.split(r"\s*(?:&&|\|\||;|\n\s*\n)\s*", rest)[0]
            out.append((p, shlex.split(rest)))
    return out


def entrypoint_problems(argv: list[str], where: str) -> list[str]:
    from flows.crawl import parse_args
    from flows.config import ConfigError, load_config

    module = argv[2] if len(argv) > 2 else ""
    if not module.startswith("flows."):
        return [f"{where}: {module!r} is not a module of flows/"]
    if not (ROOT / "flows" / (module.split(".", 1)[1].replace(".", "/") + ".py")).is_file():
        return [f"{where}: {module} does not exist (no {module.replace('.', '/')}.py)"]
    if module != "flows.crawl":
        return []
    try:
        args = parse_args(argv[3:])
    except SystemExit:
        return [f"{where}: `{' '.join(argv)}` is not a valid flows.crawl command line"]
    if not (ROOT / args.config).is_file():
        return [] if args.config == NIGHTLY_CONFIG else [f"{where}: config {args.config} does not exist"]
    try:  # the config and every --set override validate (unknown keys, wrong types)
        load_config(ROOT / args.config, args.set, input=args.input, output=args.output)
    except ConfigError as e:
        return [f"{where}: {e}"]
    return []


# ---------------------------------------------------------------- kinds

SCHEMAS = yaml.safe_load((Path(__file__).with_name("infra_schemas.yaml")).read_text())


def kind_of(doc: dict) -> str | None:
    return doc.get("kind") or ("ray-up" if "cluster_name" in doc or "provider" in doc else None)


def schema_problems(doc: dict, where: str) -> list[str]:
    """What the document's kind's schema (tests/infra_schemas.yaml) finds wrong in it."""
    kind = kind_of(doc)
    if kind not in SCHEMAS["kinds"]:
        return [f"{where}: no schema for kind {kind!r}; add one to tests/infra_schemas.yaml"]
    schema = {"$defs": SCHEMAS["$defs"], **SCHEMAS["kinds"][kind]}
    errors = Draft202012Validator(schema).iter_errors(doc)
    return [f"{where} {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
            for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))]


def ray_cluster_spec_problems(spec: dict, where: str) -> list[str]:
    """What a schema cannot say about a (structurally valid) RayCluster spec: the Ray version is the
    pin, replicas lie between min and max, and there is a CPU group and a GPU group whose GPUs Ray
    and the scheduler both know of."""
    out = []
    if "rayVersion" in spec and str(spec["rayVersion"]) != RAY_PIN:
        out.append(f"{where}.rayVersion {spec['rayVersion']} != ray pin {RAY_PIN}")
    kinds = set()
    for g in spec["workerGroupSpecs"]:
        w = f"{where}.workerGroupSpecs[{g['groupName']}]"
        if not g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]:
            out.append(f"{w}: need minReplicas <= replicas <= maxReplicas")
        tspec = g["template"]["spec"]
        if any((c["resources"]["limits"] or {}).get("nvidia.com/gpu") for c in tspec["containers"]):
            kinds.add("gpu")
            if "num-gpus" not in g["rayStartParams"]:
                out.append(f"{w}: a GPU group needs rayStartParams num-gpus")
            if not (tspec.get("nodeSelector") or tspec.get("tolerations") or tspec.get("affinity")):
                out.append(f"{w}: a GPU group needs a GPU nodeSelector, toleration or affinity")
        else:
            kinds.add("cpu")
    if kinds != {"cpu", "gpu"}:
        out.append(f"{where}: needs a CPU worker group and a GPU worker group (nvidia.com/gpu limits), has {sorted(kinds)}")
    return out


def kube_doc_problems(doc: dict, where: str) -> list[str]:
    out = schema_problems(doc, where)
    if out:
        return out
    kind, spec = doc["kind"], doc.get("spec") or {}
    if kind == "RayCluster":
        return ray_cluster_spec_problems(spec, f"{where} spec")
    if kind == "RayJob":
        if "rayClusterSpec" in spec:
            out += ray_cluster_spec_problems(spec["rayClusterSpec"], f"{where} spec.rayClusterSpec")
        if "runtimeEnvYAML" in spec and not isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict):
            out.append(f"{where}: runtimeEnvYAML is not a YAML mapping")
    if kind == "ConfigMap":
        for key, text in (doc.get("data") or {}).items():
            if key.endswith(".py"):
                try:
                    compile(text, f"{where}:{key}", "exec")
                except SyntaxError as e:
                    out.append(f"{where}: {key} does not compile: {e}")
    return out


def ray_up_problems(doc: dict, where: str) -> list[str]:
    out = schema_problems(doc, where)
    if out:
        return out
    types, mx = doc["available_node_types"], doc["max_workers"]
    if doc["head_node_type"] not in types:
        out.append(f"{where}: head_node_type {doc['head_node_type']!r} not in available_node_types")
    for name, t in types.items():
        if name != doc["head_node_type"] and not t.get("min_workers", 0) <= t.get("max_workers", -1) <= mx:
            out.append(f"{where}: node type {name} needs min_workers <= max_workers <= {mx}")
    if not any(re.match(r"(g\d|p\d)", t["node_config"]["InstanceType"]) for t in types.values()):
        out.append(f"{where}: no GPU node type (g*/p* instances)")
    return out


def doc_problems(doc, where: str) -> list[str]:
    if not isinstance(doc, dict):
        return [f"{where}: a document must be a mapping"]
    if kind_of(doc) == "ray-up":
        return ray_up_problems(doc, where)
    if "kind" in doc:
        return kube_doc_problems(doc, where)
    return [f"{where}: neither a Kubernetes manifest (kind) nor a ray up config (cluster_name, provider)"]


# ---------------------------------------------------------------- the tests

def test_expected_files_exist():
    missing = [f for f in EXPECTED if not (INFRA / f).is_file()]
    assert not missing, f"missing under infra/: {missing}"
    assert "placeholder" not in (INFRA / "README.md").read_text().lower()[:400]


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_manifest_parses_and_has_required_fields(path):
    docs = load_docs(path)
    assert docs, f"{rel(path)}: no YAML documents"
    problems = [p for i, d in enumerate(docs) for p in doc_problems(d, f"{rel(path)}#{i}")]
    assert not problems, "\n".join(problems)


def test_each_kind_is_there():
    kinds = {(d.get("kind") or ("ray-up" if "cluster_name" in d else None)) for p in YAML_FILES for d in load_docs(p)}
    assert {"RayCluster", "RayJob", "CronJob", "ray-up"} <= kinds, kinds


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_images_are_pinned_to_the_ray_pin(path):
    images = [(p, v) for d in load_docs(path) for p, v in yaml_images(d)]
    if any(d.get("kind") in ("RayCluster", "RayJob", "CronJob") or "cluster_name" in d for d in load_docs(path)):
        assert images, f"{rel(path)}: no images found"
    problems = [f"{rel(path)} {p}: {msg}" for p, v in images if (msg := image_problem(v))]
    assert not problems, "\n".join(problems)


def test_dockerfile_base_is_pinned_ray_and_runs_unprivileged():
    text = (INFRA / "Dockerfile").read_text()
    bases = dockerfile_images(text)
    assert bases, "infra/Dockerfile has no FROM"
    for b in bases:
        assert image_problem(b) is None, image_problem(b)
        assert b.startswith("rayproject/ray:"), f"base {b} is not rayproject/ray"
    users = re.findall(r"^\s*USER\s+(\S+)", text, re.M)
    assert not users or users[-1] not in ("root", "0", "0:0"), f"the image ends as {users[-1]}"
    assert re.search(r"pip install [\"']?\.", text), "the Dockerfile does not `pip install .` the project"
    assert re.search(r"ARG\s+EXTRAS", text) and "clip" in text, "no build arg for the optional [clip] extra"


def test_every_interleaf_image_tag_is_one_the_dockerfile_builds():
    built = set(re.findall(r"-t\s+(\S+)", (INFRA / "Dockerfile").read_text()))
    used = {v for p in YAML_FILES for d in load_docs(p) for _, v in yaml_images(d) if "/interleaf:" in str(v)}
    assert used <= built, f"images used but not built by infra/Dockerfile's commands: {sorted(used - built)}"


@pytest.mark.parametrize("path", sorted(p for p in INFRA.rglob("*") if p.is_file()), ids=rel)
def test_no_literal_aws_credentials(path):
    text = path.read_text(errors="replace")
    problems = text_secret_problems(text, rel(path))
    if path in YAML_FILES:
        problems += [p for i, d in enumerate(load_docs(path)) for p in doc_secret_problems(d, f"{rel(path)}#{i}")]
    assert not problems, "\n".join(problems)


def test_entrypoints_run_existing_modules_and_configs():
    found = []
    problems = []
    for path in YAML_FILES:
        for i, d in enumerate(load_docs(path)):
            for p, argv in entrypoint_commands(d):
                found.append((rel(path), argv))
                problems += entrypoint_problems(argv, f"{rel(path)}#{i} {p}")
    assert not problems, "\n".join(problems)
    by_file = {f for f, _ in found}
    assert {"infra/kuberay/rayjob.yaml", "infra/kuberay/nightly-cronjob.yaml"} <= by_file, by_file
    nightly = [a for f, a in found if f == "infra/kuberay/nightly-cronjob.yaml"]
    assert any(NIGHTLY_CONFIG in a for a in nightly), f"the CronJob does not run {NIGHTLY_CONFIG}: {nightly}"


# ---------------------------------------------------------------- the checks can fail

def _doc(name: str, kind: str) -> dict:
    for d in load_docs(INFRA / name):
        if d.get("kind") == kind or (kind == "ray-up" and "cluster_name" in d):
            return copy.deepcopy(d)
    raise AssertionError(f"no {kind} in {name}")


def test_image_check_catches_unpinned_images():
    assert image_problem(f"rayproject/ray:{RAY_PIN}-py311") is None
    assert image_problem("busybox@sha256:" + "a" * 64) is None
    assert image_problem(f"registry.example.com:5000/interleaf:{PROJECT_VERSION}-ray{RAY_PIN}-py311-gpu") is None
    for bad in ["rayproject/ray", "rayproject/ray:latest", "rayproject/ray:2.9.0-py311",
                "registry.example.com:5000/interleaf", f"x/interleaf:{PROJECT_VERSION}-ray2.9.0-py311",
                f"x/interleaf:9.9.9-ray{RAY_PIN}-py311", "busybox", "busybox:latest", "${IMAGE}"]:
        assert image_problem(bad), bad
    assert dockerfile_images("ARG B=rayproject/ray:latest\nFROM ${B}\n") == ["rayproject/ray:latest"]


def test_kind_checks_catch_broken_manifests():
    cluster = _doc("kuberay/raycluster.yaml", "RayCluster")
    assert not kube_doc_problems(cluster, "ok")
    for breakage in [lambda d: d["spec"].pop("headGroupSpec"),
                     lambda d: d["spec"]["headGroupSpec"].pop("rayStartParams"),
                     lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].pop("image"),
                     lambda d: d["spec"]["workerGroupSpecs"][0].pop("maxReplicas"),
                     lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas=5, maxReplicas=2),
                     lambda d: d["spec"]["workerGroupSpecs"].pop(1),   # no GPU group
                     lambda d: d["spec"]["workerGroupSpecs"][1]["rayStartParams"].pop("num-gpus"),
                     lambda d: d["spec"]["workerGroupSpecs"][1]["rayStartParams"].update({"num-gpus": 1}),
                     lambda d: d["spec"].update(rayVersion="2.9.0")]:
        broken = copy.deepcopy(cluster)
        breakage(broken)
        assert kube_doc_problems(broken, "broken"), breakage
    job = _doc("kuberay/rayjob.yaml", "RayJob")
    assert not kube_doc_problems(job, "ok")
    for breakage in [lambda d: d["spec"].pop("entrypoint"),
                     lambda d: d["spec"].pop("rayClusterSpec"),
                     lambda d: d["spec"].update(shutdownAfterJobFinishes=False)]:
        broken = copy.deepcopy(job)
        breakage(broken)
        assert kube_doc_problems(broken, "broken"), breakage
    cron = _doc("kuberay/nightly-cronjob.yaml", "CronJob")
    assert not kube_doc_problems(cron, "ok")
    for breakage in [lambda d: d["spec"].update(concurrencyPolicy="Allow"),
                     lambda d: d["spec"].pop("concurrencyPolicy"),
                     lambda d: d["spec"].update(schedule="0 2 * *"),
                     lambda d: d["spec"].pop("jobTemplate")]:
        broken = copy.deepcopy(cron)
        breakage(broken)
        assert kube_doc_problems(broken, "broken"), breakage
    up = _doc("aws/cluster.yaml", "ray-up")
    assert not ray_up_problems(up, "ok")
    for breakage in [lambda d: d.pop("cluster_name"),
                     lambda d: d["provider"].update(type="gcp"),
                     lambda d: d.update(head_node_type="nope"),
                     lambda d: d.pop("max_workers"),
                     lambda d: d["available_node_types"]["head"]["node_config"].pop("IamInstanceProfile")]:
        broken = copy.deepcopy(up)
        breakage(broken)
        assert ray_up_problems(broken, "broken"), breakage
    for schedule in ["0 2 * *", "0 2 * * * *", "@daily", 5]:
        broken = copy.deepcopy(cron)
        broken["spec"]["schedule"] = schedule
        assert kube_doc_problems(broken, "broken"), schedule
    assert kube_doc_problems({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "x"}}, "x")


def test_credential_checks_catch_literals():
    example_id, example_secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS docs' examples
    assert text_secret_problems(f"key: {example_id}", "t")
    assert text_secret_problems(f"aws_secret_access_key = {example_secret}", "t")
    assert not text_secret_problems("valueFrom: {secretKeyRef: {name: interleaf-s3, key: AWS_SECRET_ACCESS_KEY}}", "t")
    cluster = _doc("kuberay/raycluster.yaml", "RayCluster")
    assert not doc_secret_problems(cluster, "ok")
    env = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    env[1] = {"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}
    assert doc_secret_problems(cluster, "broken")
    assert doc_secret_problems({"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}, "s")
    assert doc_secret_problems({"spec": {"runtimeEnvYAML": "env_vars:\n  AWS_ACCESS_KEY_ID: abc\n"}}, "r")


def test_entrypoint_check_catches_bad_commands():
    ok = shlex.split("python -m flows.crawl --config configs/local.yaml --set images.fetch.enabled=true")
    assert not entrypoint_problems(ok, "ok")
    assert not entrypoint_problems(shlex.split(f"python -m flows.crawl --config {NIGHTLY_CONFIG}"), "ok")
    for bad in ["python -m flows.crawlx --config configs/local.yaml",
                "python -m json.tool x",
                "python -m flows.crawl --config configs/nope.yaml",
                "python -m flows.crawl --input x",                       # no --config
                "python -m flows.crawl --config configs/local.yaml --set extract.nope=1"]:
        assert entrypoint_problems(shlex.split(bad), "bad"), bad
    assert entrypoint_commands({"a": "cd x && python -m flows.crawl --config c.yaml && echo done"}) == [
        ("a", ["python", "-m", "flows.crawl", "--config", "c.yaml"])]
