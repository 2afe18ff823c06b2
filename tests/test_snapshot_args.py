"""_snapargs: the docker arguments of snapshots (exact lists) and the method choice."""

from __future__ import annotations

from codeexec import _snapargs as args
from codeexec._dockerargs import RunSpec, run_argv

GVISOR_INFO = {
    "ExperimentalBuild": True,
    "DockerRootDir": "/var/lib/docker",
    "Runtimes": {
        "runc": {"path": "runc"},
        "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]},
        "runsc-ckpt": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]},
    },
}


def test_checkpoint_and_restore_argv() -> None:
    assert args.checkpoint_argv("c1", "/snap/x/checkpoint") == [
        "checkpoint", "create", "--checkpoint-dir", "/snap/x/checkpoint", "c1", "session",
    ]  # fmt: skip
    assert args.checkpoint_argv("c1", "/d", leave_running=True)[2] == "--leave-running"
    assert args.start_checkpoint_argv("c2") == ["start", "--checkpoint", "session", "c2"]
    assert args.info_argv() == ["info", "--format", "{{json .}}"]


def test_create_argv_is_the_run_argv_created_not_started() -> None:
    spec = RunSpec(image="img", container_name="codeexec-a-1", labels={"k": "v"})
    assert args.create_argv(spec) == ["create", *run_argv(spec)[2:]]
    assert "--rm" in args.create_argv(spec) and "--detach" not in args.create_argv(spec)


def test_stream_argv_blank_the_token() -> None:
    assert args.tar_out_argv("c", "/workspace") == [
        "exec", "--env", "CODEEXEC_TOKEN=", "c", "tar", "-C", "/workspace", "-cf", "-", ".",
    ]  # fmt: skip
    assert args.tar_in_argv("c", "/workspace") == [
        "exec", "-i", "--env", "CODEEXEC_TOKEN=", "c", "tar", "-C", "/workspace", "-xf", "-",
    ]  # fmt: skip
    assert args.cat_argv("c", "/tmp/p") == [
        "exec",
        "--env",
        "CODEEXEC_TOKEN=",
        "c",
        "cat",
        "/tmp/p",
    ]
    assert args.write_argv("c", "/tmp/p") == [
        "exec", "-i", "--env", "CODEEXEC_TOKEN=", "c", "dd", "of=/tmp/p", "bs=1M", "status=none",
    ]  # fmt: skip


def test_only_gvisor_without_host_networking_checkpoints() -> None:
    facts = args.engine_facts(GVISOR_INFO)
    assert args.checkpointable_runtimes(facts) == ["runsc-ckpt"]
    assert args.choose_method(facts, "runsc-ckpt")[0] == "checkpoint"
    method, why = args.choose_method(facts, "runsc")
    assert method == "portable" and "runtime='runsc-ckpt'" in why
    method, why = args.choose_method(facts, None)
    assert method == "portable" and "(runc) cannot be checkpointed" in why


def test_without_experimental_or_gvisor_only_portable() -> None:
    facts = args.engine_facts({**GVISOR_INFO, "ExperimentalBuild": False})
    method, why = args.choose_method(facts, "runsc-ckpt")
    assert method == "portable" and '"experimental": true' in why
    bare = args.engine_facts({"ExperimentalBuild": True, "Runtimes": {"runc": {"path": "runc"}}})
    method, why = args.choose_method(bare, None)
    assert method == "portable" and "engine_runtimes.py" in why
