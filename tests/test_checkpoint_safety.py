"""Loading files never runs code; corrupt, foreign, newer and mismatched files get a CheckpointError naming them."""

import os
import zipfile

import gymnasium as gym
import pytest
import torch

import prune_env
from prune_env.assets import default_checkpoint_path
from prune_env.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, load_file, read_checkpoint, save_checkpoint
from prune_env.deploy import export_static, load_deployed, save_deployed
from prune_env.deploy.export import DEPLOYED_FORMAT, DEPLOYED_VERSION
from prune_env.nets import build_net

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class SideEffect:
    """Unpickling this object creates the directory ``marker`` (what a malicious file could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def crafted(path, marker, **payload):
    """A torch file whose unpickling creates ``marker``, next to real checkpoint entries."""
    torch.save({**payload, "payload": SideEffect(marker)}, path)
    return path


@pytest.fixture
def shipped():
    return read_checkpoint(default_checkpoint_path())


def test_the_crafted_file_really_has_a_side_effect_when_unpickled(tmp_path, shipped):
    """Without this, the refusal tests below could pass for the wrong reason."""
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.pt", marker, **shipped)
    load_file(path, trusted=True)
    assert marker.is_dir()


@pytest.mark.parametrize("loader", ["read_checkpoint", "load_checkpoint", "gym.make", "load_deployed"])
def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path, shipped, loader):
    marker = tmp_path / "ran"
    if loader == "load_deployed":
        path = crafted(tmp_path / "evil.pt", marker, format=DEPLOYED_FORMAT, version=DEPLOYED_VERSION)
        load = load_deployed
    else:
        path = crafted(tmp_path / "evil.pt", marker, **shipped)
        load = {"read_checkpoint": read_checkpoint, "load_checkpoint": load_checkpoint,
                "gym.make": lambda p: gym.make("RuntimePrune-v0", checkpoint=str(p))}[loader]
    with pytest.raises(CheckpointError, match="could run code") as err:
        load(path)
    assert str(path) in str(err.value) and "refused" in str(err.value)
    assert not marker.exists()


def test_load_deployed_unpickles_only_when_trusted(tmp_path):
    net = build_net("digitnet", num_classes=10, in_channels=1)
    deployed = export_static(net, 0.5)
    payload = torch.load(save_deployed(deployed, tmp_path / "ok.pt"), weights_only=True)
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.pt", marker, **payload)
    with pytest.raises(CheckpointError, match=r"trusted=True"):
        load_deployed(path)
    assert not marker.exists()
    assert load_deployed(path, trusted=True).stored_channels == deployed.stored_channels  # opted in: it ran
    assert marker.is_dir()


# ------------------------------------------------------------------------------------ corrupt files
def damaged(tmp_path, kind: str):
    good = (tmp_path / "good.pt").read_bytes() if (tmp_path / "good.pt").exists() else None
    if good is None:
        save_checkpoint(tmp_path / "good.pt", build_net("digitnet", num_classes=10, in_channels=1),
                        dataset="digits", input_shape=(1, 8, 8))
        good = (tmp_path / "good.pt").read_bytes()
    data = {
        "empty": b"",
        "truncated-head": good[:40],
        "truncated-half": good[: len(good) // 2],
        "truncated-tail": good[:-30],
        "random": bytes(range(256)) * 8,
        "text": b"config: digitnet\n",
    }[kind]
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind, words", [
    ("empty", "empty file"), ("truncated-head", "truncated"), ("truncated-half", "truncated"),
    ("truncated-tail", "truncated"), ("random", "not a torch zip file"), ("text", "not a torch zip file"),
])
def test_corrupt_files_name_the_file_and_the_problem(tmp_path, kind, words):
    path = damaged(tmp_path, kind)
    for load in (read_checkpoint, load_checkpoint, load_deployed,
                 lambda p: gym.make("RuntimePrune-v0", checkpoint=str(p))):
        with pytest.raises(CheckpointError, match=words) as err:
            load(path)
        assert str(path) in str(err.value)
        assert isinstance(err.value, ValueError) and err.value.path == str(path)


def test_a_zip_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "agent.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", "an SB3 agent, say")
    with pytest.raises(CheckpointError, match="not a torch file"):
        read_checkpoint(path)


def test_a_torch_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(3)}, path)
    with pytest.raises(CheckpointError, match="not a prune_env checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a deployed prune_env model"):
        load_deployed(path)


def test_a_newer_format_version_is_named(tmp_path, shipped):
    path = tmp_path / "new.pt"
    torch.save({**shipped, "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=rf"newer prune_env \(format version {FORMAT_VERSION + 1}"):
        load_checkpoint(path)
    torch.save({"format": DEPLOYED_FORMAT, "version": DEPLOYED_VERSION + 1, "spec": {}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="newer prune_env"):
        load_deployed(path)


def test_missing_files_stay_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_error_is_exported_and_a_value_error():
    assert prune_env.CheckpointError is CheckpointError and issubclass(CheckpointError, ValueError)


# ------------------------------------------------------------------------------------ mismatched files
def test_input_shape_mismatch_is_caught_when_the_task_is_built(tmp_path):
    path = tmp_path / "cifar.pt"
    save_checkpoint(path, build_net("mcifarnet", num_classes=10, in_channels=3, width=0.25),
                    dataset="cifar10", input_shape=(3, 32, 32))
    with pytest.raises(CheckpointError, match=r"3x32x32 inputs .* dataset='digits' gives 1x8x8") as err:
        gym.make("RuntimePrune-v0", checkpoint=str(path), dataset="digits")
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="3x32x32"):
        gym.make("StaticPrune-v0", checkpoint=str(path), dataset="digits")


def test_a_forged_checkpoint_names_the_file_and_the_first_mismatching_keys(tmp_path, shipped):
    other = build_net("mcifarnet", num_classes=10, in_channels=1, width=0.25)
    path = tmp_path / "forged.pt"
    torch.save({**shipped, "state_dict": other.state_dict()}, path)  # digitnet's config, mcifarnet's weights
    with pytest.raises(CheckpointError, match="do not fit its config") as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "'digitnet'" in message
    assert "unexpected keys (36): stages.4.gated" in message  # digitnet has 4 layers, this mcifarnet 8
    assert "stages.1.gated.conv.weight [file (16, 16, 3, 3), network (32, 16, 3, 3)]" in message
    with pytest.raises(CheckpointError, match="do not fit"):
        gym.make("RuntimePrune-v0", checkpoint=str(path))


def test_an_unknown_backbone_in_the_config(tmp_path, shipped):
    path = tmp_path / "unknown.pt"
    torch.save({**shipped, "config": {"name": "nonet"}}, path)
    with pytest.raises(CheckpointError, match="does not build a network"):
        load_checkpoint(path)


def test_the_scripts_report_a_bad_checkpoint_as_a_usage_error(tmp_path, capsys):
    import finetune_cnn
    import train_agents

    path = tmp_path / "bad.pt"
    path.write_bytes(b"")
    with pytest.raises(SystemExit) as done:
        train_agents.main(["--out", str(tmp_path / "run"), "--no-progress", "--env-kwargs", f"checkpoint='{path}'"])
    assert done.value.code == 2 and "empty file" in capsys.readouterr().err
    for argv in (["importance", "--checkpoint", str(path), "--out", str(tmp_path / "imp.pt")],
                 ["algorithm1", "--checkpoint", str(path), "--out", str(tmp_path / "a1")]):
        with pytest.raises(SystemExit) as done:
            finetune_cnn.main(argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and "empty file" in err and str(path) in err
