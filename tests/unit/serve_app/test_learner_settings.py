"""The learner section: its data directory outside the repository, warm start in one line, and CPU reservations
that fit the machine each shipped config is for."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from serve_app.config import REPO_ROOT, AppConfig, LearnerStorageError, load_config


def _cpu(**learner) -> dict:
    data = yaml.safe_load((REPO_ROOT / "configs" / "cpu.yaml").read_text())
    data["learner"].update(learner)
    return data


def test_the_default_graph_serves_every_cpu_strategy_and_learns_moe_by_default():
    config = load_config(REPO_ROOT / "configs" / "cpu.yaml")
    assert sorted(config.router.strategies) == ["dummy", "moe", "rl"] and config.router.default_strategy == "moe"
    assert sorted(config.learner.training.strategies) == ["moe", "rl"]
    moe = config.learner.training.strategies["moe"]
    assert moe.config == config.router.strategies["moe"]  # the learner trains the network the router serves


def test_cpu_yaml_reserves_at_most_the_two_cpus_of_its_machine():
    reserved = load_config(REPO_ROOT / "configs" / "cpu.yaml").cpu_reservations()
    assert "learner" in reserved and sum(reserved.values()) <= 2.0, reserved


def test_the_data_dir_is_outside_the_repository_env_explicit_and_explicit_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTERLLM_DATA_DIR", str(tmp_path / "env"))
    learner = AppConfig.model_validate(_cpu()).learner
    assert learner.data_dir == str(tmp_path / "env")
    assert learner.training.store_path == str(tmp_path / "env" / "outcomes.db")
    assert learner.training.checkpoint_dir == str(tmp_path / "env" / "policies")
    assert not learner.training.store_path.startswith(str(REPO_ROOT))
    explicit = AppConfig.model_validate(_cpu(data_dir=str(tmp_path / "mine"))).learner
    assert explicit.training.checkpoint_dir == str(tmp_path / "mine" / "policies")
    paths = {"store_path": str(tmp_path / "s.db"), "checkpoint_dir": str(tmp_path / "c")}
    data = _cpu()
    data["learner"]["training"].update(paths)
    kept = AppConfig.model_validate(data).learner.training
    assert (kept.store_path, kept.checkpoint_dir) == (paths["store_path"], paths["checkpoint_dir"])
    monkeypatch.delenv("ROUTERLLM_DATA_DIR")
    home = AppConfig.model_validate(_cpu()).learner
    assert home.data_dir == os.path.expanduser("~/.local/share/routerllm")


def test_storage_is_created_on_first_start_and_an_unwritable_dir_is_a_clear_error(tmp_path):
    learner = AppConfig.model_validate(_cpu(data_dir=str(tmp_path / "new" / "dir"))).learner
    learner.prepare_storage()
    assert (tmp_path / "new" / "dir" / "policies").is_dir()
    # /proc takes no new directories, not even from root (CI runs as root, where a chmod would not stop a write).
    bad = AppConfig.model_validate(_cpu(data_dir="/proc/routerllm-test/data")).learner
    with pytest.raises(LearnerStorageError, match=r"cannot create the learner's data directory .*learner.data_dir"):
        bad.prepare_storage()


def test_a_file_where_the_data_dir_should_be_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    learner = AppConfig.model_validate(_cpu(data_dir=str(tmp_path / "taken"))).learner
    with pytest.raises(LearnerStorageError, match=str(tmp_path / "taken")):
        learner.prepare_storage()


def test_warm_start_is_one_line_either_way(tmp_path):
    data = _cpu()
    data["router"]["strategies"]["moe"]["checkpoint"] = str(tmp_path / "ckpt")
    config = AppConfig.model_validate(data)
    assert config.learner.training.strategies["moe"].warm_start == str(tmp_path / "ckpt")
    assert "checkpoint" not in config.learner.training.strategies["moe"].config
    data = _cpu()
    data["learner"]["training"]["strategies"]["moe"] = {"warm_start": str(tmp_path / "ckpt")}
    config = AppConfig.model_validate(data)
    assert config.router.strategies["moe"]["checkpoint"] == str(tmp_path / "ckpt")
    again = AppConfig.model_validate(config.model_dump())  # validating twice changes nothing
    assert again.router.strategies == config.router.strategies
    clash = copy.deepcopy(data)
    clash["router"]["strategies"]["moe"]["checkpoint"] = str(tmp_path / "other")
    with pytest.raises(ValueError, match="differ"):
        AppConfig.model_validate(clash)


def test_relative_checkpoints_resolve_from_where_the_graph_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _cpu()
    data["router"]["strategies"]["moe"]["checkpoint"] = "ckpt/moe"
    config = AppConfig.model_validate(data)
    assert config.router.strategies["moe"]["checkpoint"] == str(tmp_path / "ckpt" / "moe")
