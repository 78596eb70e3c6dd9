"""Which engine an address names, and which container this process runs in (pure: files
made here, no engine)."""

from __future__ import annotations

import hashlib
import json

import pytest

from jupyter_mlcontainer.docker import endpoint


def make_context(config_dir, name, host, tls_files=()):
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoints = {"docker": {"Host": host, "SkipTLSVerify": False}}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": endpoints}))
    tls = config_dir / "contexts" / "tls" / digest / "docker"
    for file in tls_files:
        tls.mkdir(parents=True, exist_ok=True)
        (tls / file).write_text("x")


def test_urls_contexts_and_the_environment(tmp_path):
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "cfg")}
    make_context(tmp_path / "cfg", "gpu", "tcp://10.0.0.5:2376", endpoint.TLS_FILES)
    make_context(tmp_path / "cfg", "ssh-box", "ssh://me@gpu-box")

    gpu = endpoint.resolve("gpu", env)
    assert (gpu.url, gpu.remote, gpu.api_encrypted) == ("tcp://10.0.0.5:2376", True, True)
    assert gpu.describe() == "tcp://10.0.0.5:2376 (context gpu)"
    assert endpoint.resolve("ssh-box", env).api_encrypted
    plain = endpoint.resolve("tcp://10.0.0.5:2375", env)
    assert plain.remote and not plain.api_encrypted
    assert not endpoint.resolve("tcp://127.0.0.1:2375", env).remote
    assert endpoint.resolve(None, {**env, "DOCKER_CONTEXT": "gpu"}).url == gpu.url
    assert endpoint.resolve(None, {**env, "DOCKER_HOST": "ssh://a@b"}).source == "DOCKER_HOST"
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({"currentContext": "ssh-box"}))
    assert endpoint.resolve(None, env).source == "the current docker context"

    with pytest.raises(endpoint.EndpointError, match="is neither an engine URL"):
        endpoint.resolve("no-such-context", env)
    with pytest.raises(endpoint.EndpointError, match="no docker context"):
        endpoint.resolve(None, {**env, "DOCKER_CONTEXT": "missing"})


def test_tls_for_a_tcp_url_comes_from_docker_cert_path(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    env = {"HOME": str(tmp_path), "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    with pytest.raises(endpoint.EndpointError, match=r"lacks ca\.pem, cert\.pem, key\.pem"):
        endpoint.resolve("tcp://gpu-box:2376", env)
    for name in endpoint.TLS_FILES:
        (certs / name).write_text("x")
    assert endpoint.resolve("tcp://gpu-box:2376", env).tls is not None


def test_an_ssh_alias_is_reached_at_its_hostname(tmp_path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host gpu-box\n  HostName 10.1.2.3\n")
    where = endpoint.resolve("ssh://me@gpu-box", {"HOME": str(tmp_path)})
    assert endpoint.kernel_host(where, {"HOME": str(tmp_path)}) == "10.1.2.3"
    other = endpoint.resolve("ssh://me@elsewhere", {"HOME": str(tmp_path)})
    assert endpoint.kernel_host(other, {"HOME": str(tmp_path)}) == "elsewhere"


def test_a_server_in_a_container_finds_its_id_in_its_mount_table(tmp_path):
    from jupyter_mlcontainer.docker.sibling import own_container_id

    cid = "ab" * 32
    inside = tmp_path / "inside"
    inside.write_text(
        "1 0 0:1 / / rw - overlay overlay rw\n"
        f"2 1 8:1 /var/lib/docker/containers/{cid}/resolv.conf /etc/resolv.conf rw - ext4 x\n"
    )
    outside = tmp_path / "outside"
    outside.write_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")
    assert own_container_id(str(inside)) == cid
    assert own_container_id(str(outside)) is None
    assert own_container_id(str(tmp_path / "missing")) is None
