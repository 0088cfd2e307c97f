"""Builders, nodes and routing (wheeltasks.engines), per-engine checks, and the second engine.

The parsers are tested on outputs recorded from buildx 0.13.1 and docker 28 here. The
routing tests run on real engines (the default one and the second one the
``second_engine`` fixture starts); only a node on another machine is stood in for (a
probe answering ``aarch64``): there is one machine here.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.fixtures_engines import DATA_ROOT, SOCKET, TestEngine, build_records, ran_on
from tests.helpers import make_settings
from wheeltasks import buildx, docker_engine, enginereport
from wheeltasks.buildx import ListedBuilder, ListedNode
from wheeltasks.docker_engine import Endpoint
from wheeltasks.engines import BuilderMap, Engines, parse_builders
from wheeltasks.errors import RemoteError, WheelTasksError
from wheeltasks.platforms import platform_key
from wheeltasks.settings import Cross
from wheeltasks.targets import get_arch, host_machine

# ---- recorded outputs (buildx 0.13.1+ds1, docker CLI 28.2.2, engine 20.10.24) ---------

# `docker buildx ls --format json` with two docker-driver builders: each printed once per
# table row (the builder's row and its node's row).
LS_TWO_ENGINES = """\
{"Name":"default","Driver":"docker","LastActivity":"2026-11-25T13:53:50Z","Dynamic":false,"Nodes":[{"Name":"default","Endpoint":"default","Status":"running","Version":"v0.8+unknown","IDs":["moby"],"Platforms":["linux/amd64","linux/arm64","linux/riscv64","linux/ppc64le","linux/s390x","linux/386","linux/arm/v7","linux/arm/v6"]}]}
{"Name":"default","Driver":"docker","LastActivity":"2026-11-25T13:53:50Z","Dynamic":false,"Nodes":[{"Name":"default","Endpoint":"default","Status":"running","Version":"v0.8+unknown","IDs":["moby"],"Platforms":["linux/amd64","linux/arm64","linux/riscv64","linux/ppc64le","linux/s390x","linux/386","linux/arm/v7","linux/arm/v6"]}]}
{"Name":"wheeltasks-engine2","Driver":"docker","LastActivity":"0001-01-01T00:00:00Z","Dynamic":false,"Nodes":[{"Name":"wheeltasks-engine2","Endpoint":"wheeltasks-engine2","Status":"running","Version":"v0.8+unknown","IDs":["moby"],"Platforms":["linux/amd64","linux/arm64","linux/riscv64","linux/ppc64le","linux/s390x","linux/386","linux/arm/v7","linux/arm/v6"]}]}
{"Name":"wheeltasks-engine2","Driver":"docker","LastActivity":"0001-01-01T00:00:00Z","Dynamic":false,"Nodes":[{"Name":"wheeltasks-engine2","Endpoint":"wheeltasks-engine2","Status":"running","Version":"v0.8+unknown","IDs":["moby"],"Platforms":["linux/amd64","linux/arm64","linux/riscv64","linux/ppc64le","linux/s390x","linux/386","linux/arm/v7","linux/arm/v6"]}]}
"""

# A docker-container builder with two nodes (never booted: inactive, their --platform
# values listed), the second on a context whose engine went away; and a docker-driver
# builder (a context) whose engine is down.
LS_MULTI_NODE = """\
{"Name":"wt-multi","Driver":"docker-container","LastActivity":"2026-11-25T14:02:53Z","Dynamic":false,"Nodes":[{"Name":"amd-node","Endpoint":"unix:///var/run/docker.sock","Flags":["--allow-insecure-entitlement=network.host"],"Status":"inactive","Platforms":["linux/amd64"]},{"Name":"flaky-node","Endpoint":"wt-flaky","Flags":["--allow-insecure-entitlement=network.host"],"Status":"error","Err":"Cannot connect to the Docker daemon at unix:///tmp/wt-nothing.sock. Is the docker daemon running?","Platforms":["linux/arm64"]}]}
{"Name":"wt-multi","Driver":"docker-container","LastActivity":"2026-11-25T14:02:53Z","Dynamic":false,"Nodes":[{"Name":"amd-node","Endpoint":"unix:///var/run/docker.sock","Flags":["--allow-insecure-entitlement=network.host"],"Status":"inactive","Platforms":["linux/amd64"]},{"Name":"flaky-node","Endpoint":"wt-flaky","Flags":["--allow-insecure-entitlement=network.host"],"Status":"error","Err":"Cannot connect to the Docker daemon at unix:///tmp/wt-nothing.sock. Is the docker daemon running?","Platforms":["linux/arm64"]}]}
{"Name":"wt-multi","Driver":"docker-container","LastActivity":"2026-11-25T14:02:53Z","Dynamic":false,"Nodes":[{"Name":"amd-node","Endpoint":"unix:///var/run/docker.sock","Flags":["--allow-insecure-entitlement=network.host"],"Status":"inactive","Platforms":["linux/amd64"]},{"Name":"flaky-node","Endpoint":"wt-flaky","Flags":["--allow-insecure-entitlement=network.host"],"Status":"error","Err":"Cannot connect to the Docker daemon at unix:///tmp/wt-nothing.sock. Is the docker daemon running?","Platforms":["linux/arm64"]}]}
{"Name":"wt-dead","Driver":"","LastActivity":"0001-01-01T00:00:00Z","Dynamic":false,"Nodes":[{"Name":"","Endpoint":""}],"Err":"Cannot connect to the Docker daemon at unix:///tmp/wt-nothing.sock. Is the docker daemon running?"}
"""

# `docker buildx inspect` (the current builder).
INSPECT_DEFAULT = """\
Name:          default
Driver:        docker
Last Activity: 2026-11-25 13:53:50 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.8+unknown
Platforms:        linux/amd64, linux/arm64, linux/riscv64, linux/ppc64le, linux/s390x, linux/386, linux/arm/v7, linux/arm/v6
"""

# `docker context inspect` of a tcp context with TLS material.
CONTEXT_TLS = """\
[
    {
        "Name": "wt-tls-rec",
        "Metadata": {},
        "Endpoints": {"docker": {"Host": "tcp://127.0.0.1:2376", "SkipTLSVerify": false}},
        "TLSMaterial": {"docker": ["ca.pem", "cert.pem", "key.pem"]},
        "Storage": {
            "MetadataPath": "/root/.docker/contexts/meta/4d73",
            "TLSPath": "/root/.docker/contexts/tls/4d73"
        }
    }
]
"""
CONTEXT_PLAIN = """\
[{"Name": "wheeltasks-engine2", "Metadata": {"Description": "test"},
  "Endpoints": {"docker": {"Host": "unix:///run/wheeltasks-engine2.sock", "SkipTLSVerify": false}},
  "TLSMaterial": {}, "Storage": {"MetadataPath": "/root/.docker/contexts/meta/3490", "TLSPath": "/root/.docker/contexts/tls/3490"}}]
"""

ENGINE2_HOST = f"unix://{SOCKET}"


# ---- platforms and BUILDERS (pure) ---------------------------------------------------


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/amd64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("LINUX/386", "linux/386"),
        ("linux/riscv64", "linux/riscv64"),
    ],
)
def test_platform_key_is_containerds_normal_form(given: str, key: str) -> None:
    assert platform_key(given) == key


@pytest.mark.parametrize("bad", ["linux", "linux/", "/amd64", "linux/arm/v7/x", ""])
def test_platform_key_refuses_what_is_no_platform(bad: str) -> None:
    with pytest.raises(ValueError, match="not a platform"):
        platform_key(bad)


@pytest.mark.parametrize(
    ("entries", "everything", "by_platform"),
    [
        ((), None, {}),
        (("arm-farm",), "arm-farm", {}),
        (("arm-farm", "arm-farm"), "arm-farm", {}),
        (("linux/arm64=arm-node", "linux/amd64=default"), None, {"linux/arm64": "arm-node", "linux/amd64": "default"}),
        (("linux/arm64/v8=arm-node",), None, {"linux/arm64": "arm-node"}),
        (("arm64=arm-node", "armv7=arm-node"), None, {"linux/arm64": "arm-node", "linux/arm/v7": "arm-node"}),
        (("linux/arm=pi",), None, {"linux/arm/v7": "pi"}),
        (("linux/arm64=a", "linux/arm64/v8=a"), None, {"linux/arm64": "a"}),
    ],
)
def test_parse_builders(entries: tuple[str, ...], everything: str | None, by_platform: dict[str, str]) -> None:
    mapping = parse_builders(entries)
    assert mapping.everything == everything
    assert dict(mapping.by_platform) == by_platform


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (("linux/sparc=x",), r"'linux/sparc' is not a platform wheeltasks builds \(one of linux/amd64, linux/arm64/v8"),
        (("mips=x",), "'mips' is not a platform wheeltasks builds"),
        (("=x",), "is not a platform wheeltasks builds"),
        (("linux/arm64=",), r"'linux/arm64=' is not platform=builder or a builder's name"),
        (("linux/arm64=a=b",), "is not platform=builder or a builder's name"),
        (("bad!name",), "is not platform=builder or a builder's name"),
        (("a", "b"), r"names several builders without platforms \(a, b\)"),
        (("a", "linux/arm64=b"), r"mixes a builder name \(a\) with platform=builder entries"),
        (("linux/arm64=a", "linux/arm64/v8=b"), r"maps linux/arm64/v8 twice \(a and b\): keep one"),
    ],
)
def test_bad_builders_say_what_is_wrong_in_one_line(entries: tuple[str, ...], message: str) -> None:
    with pytest.raises(WheelTasksError, match=message) as caught:
        parse_builders(entries)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_builders_setting_comes_through_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"BUILDERS": "linux/arm64=arm-node,linux/amd64=default"})
    mapping = parse_builders(settings.builders)
    assert mapping.name_for("linux/arm64/v8") == "arm-node"
    assert mapping.name_for("linux/amd64") == "default"
    assert mapping.name_for("linux/arm/v7") is None  # buildx's current builder
    assert str(mapping) == "linux/arm64/v8=arm-node,linux/amd64=default"


# ---- parsers on recorded outputs (pure) ----------------------------------------------


def test_parse_ls_lists_each_builder_once_in_order() -> None:
    listed = buildx.parse_ls(LS_TWO_ENGINES)
    assert [b.name for b in listed] == ["default", "wheeltasks-engine2"]
    node = listed[1].nodes[0]
    assert (node.name, node.endpoint, node.status) == ("wheeltasks-engine2", "wheeltasks-engine2", "running")
    assert node.platforms[:2] == ("linux/amd64", "linux/arm64")
    assert "linux/arm/v7" in node.platforms


def test_parse_ls_keeps_errors_of_builders_and_nodes() -> None:
    multi, dead = buildx.parse_ls(LS_MULTI_NODE)
    assert multi.driver == "docker-container"
    assert [(n.name, n.status, n.platforms) for n in multi.nodes] == [
        ("amd-node", "inactive", ("linux/amd64",)),
        ("flaky-node", "error", ("linux/arm64",)),
    ]
    assert "wt-nothing.sock" in multi.nodes[1].error
    assert dead == ListedBuilder(name="wt-dead", driver="", nodes=(), error=dead.error)
    assert dead.error.startswith("Cannot connect to the Docker daemon at unix:///tmp/wt-nothing.sock")


def test_parse_ls_takes_a_json_array_too() -> None:
    array = "[" + ",".join(LS_TWO_ENGINES.splitlines()) + "]"
    assert [b.name for b in buildx.parse_ls(array)] == ["default", "wheeltasks-engine2"]


def test_parse_ls_says_to_upgrade_buildx_on_a_table() -> None:
    with pytest.raises(WheelTasksError, match=r"upgrade buildx to 0\.13"):
        buildx.parse_ls("NAME/NODE     DRIVER/ENDPOINT   STATUS\ndefault *  docker\n")


def test_parse_inspect_name() -> None:
    assert buildx.parse_inspect_name(INSPECT_DEFAULT) == "default"
    assert buildx.parse_inspect_name("") is None


def test_parse_context_with_and_without_tls() -> None:
    assert buildx.parse_context(CONTEXT_TLS) == Endpoint(
        host="tcp://127.0.0.1:2376", tls_dir="/root/.docker/contexts/tls/4d73/docker", context="wt-tls-rec"
    )
    assert buildx.parse_context(CONTEXT_PLAIN) == Endpoint(host=ENGINE2_HOST, context="wheeltasks-engine2")
    assert buildx.parse_context("[]") is None
    assert buildx.parse_context("not json") is None


# ---- routing on recorded builders (pure) ---------------------------------------------

CONTEXTS = {
    "default": Endpoint(host="unix:///var/run/docker.sock", context="default"),
    "wheeltasks-engine2": Endpoint(host=ENGINE2_HOST, context="wheeltasks-engine2"),
    "wt-dead": Endpoint(host="unix:///tmp/wt-nothing.sock", context="wt-dead"),
}


def recorded(text: str, machines: dict[str, str], current: str = "default") -> Engines:
    """Builders from a recorded listing, with engines that answer with the given CPUs.

    A stand-in for probing: the recorded engines (and an arm64 machine) are not all here.
    """

    def probe(endpoint: Endpoint) -> str:
        if endpoint.host not in machines:
            raise RemoteError(f"the Docker engine at {endpoint} does not answer")
        return machines[endpoint.host]

    return Engines(tuple(
        buildx.resolve_builder(b, current=b.name == current, probe=probe, contexts=CONTEXTS.get)
        for b in buildx.parse_ls(text)
    ))


def test_routes_follow_builders_and_say_native_or_not() -> None:
    found = recorded(LS_TWO_ENGINES, {"unix:///var/run/docker.sock": "x86_64", ENGINE2_HOST: "aarch64"})
    mapping = parse_builders(("linux/arm64=wheeltasks-engine2",))
    arm = found.route(mapping, "linux/arm64/v8")
    assert (arm.builder.name, arm.node.name, arm.engine) == ("wheeltasks-engine2", "wheeltasks-engine2", CONTEXTS["wheeltasks-engine2"])
    assert arm.native
    assert arm.buildx_build() == ["docker", "--context", "wheeltasks-engine2", "buildx", "build", "--builder", "wheeltasks-engine2"]
    amd = found.route(mapping, "linux/amd64")
    assert (amd.builder.name, amd.native) == ("default", True)
    s390x = found.route(mapping, "linux/s390x")
    assert (s390x.builder.name, s390x.native) == ("default", False)
    assert found.route(mapping, "linux/386").native  # 32-bit mode of the x86_64 CPU
    assert arm.to_json() == {
        "platform": "linux/arm64/v8", "builder": "wheeltasks-engine2", "node": "wheeltasks-engine2",
        "endpoint": "wheeltasks-engine2", "docker_host": ENGINE2_HOST, "context": "wheeltasks-engine2", "native": True,
    }


def test_a_multi_node_builder_routes_to_the_first_node_listing_the_platform() -> None:
    found = recorded(LS_MULTI_NODE, {"unix:///var/run/docker.sock": "x86_64"})
    mapping = parse_builders(("wt-multi",))
    amd = found.route(mapping, "linux/amd64")
    assert (amd.node.name, amd.engine, amd.native) == ("amd-node", Endpoint(host="unix:///var/run/docker.sock"), True)
    assert amd.buildx_build() == ["docker", "buildx", "build", "--builder", "wt-multi"]
    with pytest.raises(RemoteError, match=r"builder 'wt-multi' node 'flaky-node' at wt-flaky cannot be reached \(Cannot connect .*wt-nothing.sock") as caught:
        found.route(mapping, "linux/arm64/v8")
    assert "map linux/arm64/v8 to another builder in BUILDERS" in str(caught.value)
    with pytest.raises(WheelTasksError, match=r"builder 'wt-multi' has no node that builds linux/s390x \(its platforms: linux/amd64, linux/arm64\)"):
        found.route(mapping, "linux/s390x")


def test_a_builder_that_cannot_load_is_named_with_its_engine() -> None:
    found = recorded(LS_MULTI_NODE, {})
    dead = found.builder("wt-dead")
    assert (dead.driver, dead.nodes[0].where) == ("docker", "unix:///tmp/wt-nothing.sock (context wt-dead)")
    with pytest.raises(RemoteError, match=r"builder 'wt-dead' at unix:///tmp/wt-nothing.sock \(context wt-dead\) cannot be reached") as caught:
        found.route(parse_builders(("linux/riscv64=wt-dead",)), "linux/riscv64")
    assert caught.value.exit_code == 4


def test_unknown_builder_and_no_current_builder() -> None:
    found = recorded(LS_TWO_ENGINES, {"unix:///var/run/docker.sock": "x86_64"}, current="")
    with pytest.raises(WheelTasksError, match=r"BUILDERS names builder 'arm-node', which buildx does not know \(builders: default, wheeltasks-engine2\)"):
        found.route(parse_builders(("linux/arm64=arm-node",)), "linux/arm64/v8")
    with pytest.raises(WheelTasksError, match="no current builder"):
        found.route(BuilderMap(), "linux/amd64")


def test_a_remote_buildkit_node_is_native_for_the_platform_it_lists_first() -> None:
    listed = ListedBuilder(
        name="farm", driver="remote",
        nodes=(ListedNode("farm0", "tcp://127.0.0.1:1234", "running", ("linux/arm64", "linux/amd64")),),
    )
    node = buildx.resolve_builder(listed, current=False, probe=None, contexts=CONTEXTS.get).nodes[0]
    assert node.engine is None  # no Docker engine: its containers run on the default engine
    assert node.native("linux/arm64/v8")
    assert not node.native("linux/amd64")


def test_report_names_native_emulated_and_the_fallbacks() -> None:
    found = recorded(LS_TWO_ENGINES + LS_MULTI_NODE, {"unix:///var/run/docker.sock": "x86_64", ENGINE2_HOST: "aarch64"})
    mapping = parse_builders(("linux/arm64=wheeltasks-engine2", "linux/riscv64=wt-dead"))
    text = enginereport.render(found, mapping, Cross.AUTO)
    assert "  default (docker driver, current)" in text
    assert "node wheeltasks-engine2 at unix:///run/wheeltasks-engine2.sock (context wheeltasks-engine2), running, aarch64: reachable" in text
    assert "emulated (QEMU): linux/arm64, linux/riscv64" in text
    assert "node flaky-node at wt-flaky, error, machine unknown: unreachable: Cannot connect" in text
    assert "linux/arm64/v8  wheeltasks-engine2/wheeltasks-engine2  native" in text
    assert "linux/s390x     default/default  no native node: cross-compiled (CROSS=auto), emulated with QEMU" in text
    assert "linux/riscv64   -  cannot build: builder 'wt-dead'" in text
    assert "no native node: emulated with QEMU (CROSS=never)" in enginereport.render(found, mapping, Cross.NEVER)
    data = enginereport.to_json(found, mapping, Cross.ALWAYS)
    json.dumps(data)
    rows = {row["arch"]: row for row in data["platforms"]}
    assert rows["arm64v8"]["route"]["native"] is True
    assert rows["s390x"]["how"] == "no native node: cross-compiled (CROSS=always)"
    assert rows["riscv64"]["route"] is None
    nodes = {n["name"]: n for b in data["builders"] for n in b["nodes"]}
    assert nodes["flaky-node"]["reachable"] is False
    assert nodes["default"]["native"] == ["linux/amd64", "linux/386"]


# ---- the second engine (real) --------------------------------------------------------


def test_second_engine_answers_beside_the_first(second_engine: TestEngine, first_engine: TestEngine) -> None:
    if second_engine.started_in is not None:
        print(f"second engine started in {second_engine.started_in:.2f} s")
        assert second_engine.started_in < 60
    info = second_engine.client().info()
    assert info["DockerRootDir"] == str(DATA_ROOT)
    assert docker_engine.client().info()["DockerRootDir"] != str(DATA_ROOT)  # (their IDs match: both read /etc/docker/key.json)
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    assert "dockerd" not in listening and "containerd" not in listening  # unix sockets only


def test_both_engines_are_listed_with_their_endpoints_and_platforms(second_engine: TestEngine, first_engine: TestEngine) -> None:
    found = buildx.discover()
    second = found.builder(second_engine.name)
    assert second.driver == "docker"
    [node] = second.nodes
    assert node.engine == Endpoint(host=ENGINE2_HOST, context=second_engine.name)
    assert (node.status, node.machine, node.reachable) == ("running", host_machine(), True)
    first = found.builder("default")
    assert first.nodes[0].engine is not None and first.nodes[0].engine.host == first_engine.host
    for builder in (first, second):
        assert builder.nodes[0].lists("linux/amd64")
        assert builder.nodes[0].lists("linux/arm64/v8")  # through QEMU (.ci/services.sh)
        assert builder.nodes[0].native_platforms()[0] == "linux/amd64"


def test_builders_route_platforms_to_engines(second_engine: TestEngine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"BUILDERS": f"linux/arm64={second_engine.name},linux/amd64=default"})
    builder_for = buildx.router(settings)
    arm = builder_for("linux/arm64/v8")
    assert (arm.builder.name, arm.engine, arm.native) == (second_engine.name, second_engine.endpoint, False)
    amd = builder_for("linux/amd64")
    assert (amd.builder.name, amd.native) == ("default", True)
    current = buildx.discover().current
    assert current is not None and builder_for("linux/arm/v7").builder.name == current.name
    everything = buildx.router(make_settings(tmp_path, {"BUILDERS": second_engine.name}))
    assert {everything(a.platform).builder.name for a in map(get_arch, ("amd64", "arm64", "s390x"))} == {second_engine.name}


def test_builders_naming_an_unknown_builder_fail_before_any_job(tmp_path: Path, first_engine: TestEngine) -> None:
    settings = make_settings(tmp_path, {"BUILDERS": "linux/arm64=no-such-builder-here"})
    with pytest.raises(WheelTasksError, match="BUILDERS names builder 'no-such-builder-here', which buildx does not know"):
        buildx.router(settings)


@pytest.fixture
def dead_context(tmp_path: Path, first_engine: TestEngine) -> Iterator[tuple[str, str]]:
    """A docker context on a socket where nothing listens: (its name, its host)."""
    name = f"wt-test-dead-{uuid.uuid4().hex[:8]}"
    host = f"unix://{tmp_path}/nothing.sock"
    subprocess.run(["docker", "context", "create", name, "--docker", f"host={host}"], check=True, capture_output=True)
    try:
        yield name, host
    finally:
        subprocess.run(["docker", "context", "rm", "--force", name], check=False, capture_output=True)


def test_an_unreachable_builder_is_named_in_the_error(dead_context: tuple[str, str], tmp_path: Path) -> None:
    name, host = dead_context
    builder_for = buildx.router(make_settings(tmp_path, {"BUILDERS": f"linux/arm64={name}"}))
    with pytest.raises(RemoteError, match=rf"builder '{name}' at {host} \(context {name}\) cannot be reached \(Cannot connect") as caught:
        builder_for("linux/arm64/v8")
    assert "\n" not in str(caught.value)
    assert builder_for("linux/amd64").builder.name != name  # the other platforms still route
    text = enginereport.render(buildx.discover(), parse_builders(()), Cross.AUTO)
    assert f"  {name} (docker driver)\n    node {name} at {host} (context {name}), error, machine unknown: unreachable: Cannot connect" in text


def test_an_unreachable_node_of_a_multi_node_builder_is_named(second_engine: TestEngine, tmp_path: Path) -> None:
    """A docker-container builder (never booted: no moby/buildkit image here) whose arm64 node's engine went away."""
    suffix = uuid.uuid4().hex[:8]
    context, builder = f"wt-test-flaky-{suffix}", f"wt-test-multi-{suffix}"
    run = lambda *args: subprocess.run(["docker", *args], check=True, capture_output=True, text=True)  # noqa: E731
    run("context", "create", context, "--docker", f"host={second_engine.host}")
    try:
        run("buildx", "create", "--name", builder, "--driver", "docker-container", "--node", "amd-node", "--platform", "linux/amd64", "default")
        # buildx refuses to append a node it cannot reach: append while the engine answers, then move it away.
        run("buildx", "create", "--name", builder, "--append", "--node", "arm-node", "--platform", "linux/arm64", context)
        run("context", "update", context, "--docker", f"host=unix://{tmp_path}/gone.sock")
        builder_for = buildx.router(make_settings(tmp_path, {"BUILDERS": builder}))
        amd = builder_for("linux/amd64")
        assert (amd.node.name, amd.node.status, amd.native) == ("amd-node", "inactive", True)
        where = rf"unix://{tmp_path}/gone.sock \(context {context}\)"
        with pytest.raises(RemoteError, match=rf"builder '{builder}' node 'arm-node' at {where} cannot be reached \(Cannot connect"):
            builder_for("linux/arm64/v8")
    finally:
        subprocess.run(["docker", "context", "update", context, "--docker", f"host={second_engine.host}"], capture_output=True, check=False)
        subprocess.run(["docker", "buildx", "rm", builder], capture_output=True, check=False)
        subprocess.run(["docker", "context", "rm", "--force", context], capture_output=True, check=False)


def test_engine_checks_per_endpoint(second_engine: TestEngine, tmp_path: Path) -> None:
    endpoint = second_engine.endpoint
    assert docker_engine.client(endpoint) is docker_engine.client(endpoint)  # cached per engine
    assert docker_engine.engine_machine(endpoint) == host_machine()
    assert docker_engine.engine_cpus(endpoint) >= 1
    docker_engine.check_build(get_arch("amd64"), endpoint)
    docker_engine.check_platform(get_arch("arm64"), endpoint)  # same kernel: this host's QEMU handlers
    gone = Endpoint(host=f"unix://{tmp_path}/gone.sock", context="gone")
    with pytest.raises(RemoteError, match=rf"the Docker engine at unix://{tmp_path}/gone.sock \(context gone\) does not answer"):
        docker_engine.client(gone)


def test_a_build_routed_to_the_second_engine_runs_there_only(
    second_engine: TestEngine, first_engine: TestEngine, builder_image: str, tmp_path: Path
) -> None:
    marker = f"wheeltasks-engine-test-{uuid.uuid4().hex}"
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {builder_image}\nRUN echo {marker} > /marker.txt\nFROM scratch\nCOPY --from=0 /marker.txt /\n",
        encoding="utf-8",
    )
    since = datetime.now(timezone.utc)
    route = buildx.router(make_settings(tmp_path, {"BUILDERS": f"linux/amd64={second_engine.name}"}))("linux/amd64")
    out = tmp_path / "out"
    command = [*route.buildx_build(), "--platform", "linux/amd64", "--network", "host", "--progress", "plain",
               "--output", f"type=local,dest={out}", str(context)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "marker.txt").read_text(encoding="utf-8").strip() == marker
    assert ran_on(second_engine, marker)
    assert ran_on(second_engine, marker, since=since)
    assert not ran_on(first_engine, marker)
    assert any(marker in r.description and r.description.startswith("mount / from exec") for r in build_records(second_engine, since))


def test_engines_report_on_real_engines(second_engine: TestEngine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"BUILDERS": f"linux/arm64={second_engine.name}", "ARCHES": "amd64,arm64"})
    text = enginereport.report(settings)
    assert f"  {second_engine.name} (docker driver)" in text
    assert f"linux/arm64/v8  {second_engine.name}/{second_engine.name}  no native node: cross-compiled (CROSS=auto)" in text
    data = json.loads(enginereport.report(settings, as_json=True))
    assert [row["arch"] for row in data["platforms"]] == ["amd64", "arm64v8"]
    assert data["platforms"][1]["route"]["docker_host"] == second_engine.host
