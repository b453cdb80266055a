"""cluster.yaml passes Ray's own cluster-launcher validation and installs and starts the GPU graph."""

import copy

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from serve_app.config import REPO_ROOT


@pytest.fixture
def cluster() -> dict:
    return yaml.safe_load((REPO_ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_is_valid_for_ray(cluster):
    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_cluster_yaml_rejects_typos(cluster):
    cluster["available_node_types"]["gpu_worker"]["min_wrokers"] = 1
    with pytest.raises(Exception, match="min_wrokers"):
        validate_config(prepare_config(cluster))


def test_cluster_installs_gpu_extra_and_starts_the_graph(cluster):
    setup = " ".join(cluster["setup_commands"])
    assert ".[gpu]" in setup
    assert any("-m serve_app run" in c and "configs/gpu.yaml" in c for c in cluster["head_start_ray_commands"])
