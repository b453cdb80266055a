"""Config schema: the shipped configs load, and mistakes are errors that say what is wrong."""

import pytest
import yaml

from serve_app.config import REPO_ROOT, ConfigError, load_config


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml"])
def test_shipped_configs_load(name):
    config = load_config(REPO_ROOT / "configs" / name)
    assert len(config.catalog) == 4
    assert config.router.default_strategy in config.router.strategies


def test_gpu_config_puts_each_expert_on_its_own_gpu():
    config = load_config(REPO_ROOT / "configs" / "gpu.yaml")
    assert all(e.num_gpus == 1 and e.backend.kind == "vllm" for e in config.experts)
    assert 0 < config.embedding.num_gpus < 1


def _write(tmp_path, data) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _base() -> dict:
    return yaml.safe_load((REPO_ROOT / "configs" / "cpu.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["server"].update(prot=1), "prot"),
        (lambda c: c["experts"][0].update(prce_in_per_1k=1), "prce_in_per_1k"),
        (lambda c: c["experts"][0]["backend"].update(kind="llamacpp"), "kind"),
        (lambda c: c["router"].update(strategies={"nope": {}}, default_strategy="nope"), "Available strategies"),
        (lambda c: c["router"].update(default_strategy="knn"), "not enabled"),
        (lambda c: c["router"]["strategies"].update(task={}), "offline references"),
        (lambda c: c["router"]["strategies"].update(oracle={}), "offline references"),
        (lambda c: c["experts"].append(dict(c["experts"][0])), "unique"),
        (lambda c: c["experts"][0].update(quality_prior=1.5), "quality_prior"),
        (lambda c: c["experts"][0].update(name="router"), "reserved"),
        (lambda c: c.update(experts=[]), "experts"),
        (lambda c: c["embedding"].update(runtime="tensorrt"), "runtime"),
        (lambda c: c["embedding"].update(threads=0), "threads"),
        (lambda c: c["experts"][0].update(temperature=3), "temperature"),
        (lambda c: c["experts"][0].update(top_p=0), "top_p"),
    ],
)
def test_invalid_configs_are_rejected_with_the_reason(tmp_path, mutate, message):
    data = _base()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, data))


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml"])
def test_shipped_learners_route_on_the_head_with_thompson_sampling_and_log_true_probabilities(name):
    import numpy as np

    from router_deployments.objectives import ObjectiveWeights
    from router_deployments.strategies import RouteContext, build_strategy

    config = load_config(REPO_ROOT / "configs" / name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    weights = ObjectiveWeights(**config.router.default_weights.model_dump())
    contexts = [RouteContext(text="", embedding=e, weights=weights) for e in x]
    for strategy_name in ("rl", "moe"):
        # What the router serves is what the learner trains (the config's validator copies it over).
        training = config.learner.training.strategies[strategy_name]
        assert training.config["head"] == {"ridge": 30, "blend": "evidence"} and training.config["network_weight"] == 0
        strategy = build_strategy(strategy_name, config.catalog, training.config)
        if strategy_name == "rl":  # the served network follows the trained one as fast as bench-online measured
            from training.benchmarks.online_setup import STRATEGY_CONFIG

            assert strategy.config.tau == STRATEGY_CONFIG["rl"]["tau"] == 0.05
        decisions = strategy.route_batch(contexts)
        for d in decisions:
            assert sum(d.probs) == pytest.approx(1.0) and d.probs[config.catalog.index(d.expert)] > 0
        # Cold, the head is the catalog: one expert is most likely everywhere, and Thompson draws explore others in
        # proportion to their logged probabilities.
        probs = np.array([d.probs for d in decisions])
        chosen = np.array([config.catalog.index(d.expert) for d in decisions])
        assert len(set(probs.argmax(axis=1))) == 1
        share = np.bincount(chosen, minlength=len(config.catalog)) / len(chosen)
        np.testing.assert_allclose(share, probs.mean(axis=0), atol=0.1)
