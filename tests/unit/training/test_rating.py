"""`routerllm rate`: a served learner's head seeded with a rating table, loaded by the router the config builds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from router_deployments.checkpoints import CheckpointError
from router_deployments.strategies import RouteContext, build_strategy
from serve_app.config import DEFAULT_CONFIG, load_config
from training.cli import main
from training.data.embedding_cache import embed_texts
from training.data.routerbench import load_routerbench
from training.rating import rate


@pytest.fixture(scope="module")
def rated(routerbench_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rated") / "moe"
    summary = rate("moe", str(routerbench_dir), str(out), DEFAULT_CONFIG, limit=60, seed=1)
    return out, summary


def served(checkpoint=None):
    """moe as configs/cpu.yaml serves it (router.strategies.moe), optionally with `checkpoint:` set."""
    config = load_config(DEFAULT_CONFIG)
    entry = {**config.router.strategies["moe"], **({"checkpoint": str(checkpoint)} if checkpoint else {})}
    strategy = build_strategy("moe", config.catalog, entry)
    strategy.setup()
    return strategy, config


def test_the_served_router_starts_from_the_rated_head_and_reads_the_table_against_its_own_catalog(
    rated, routerbench_dir
):
    out, summary = rated
    strategy, config = served(out)
    assert summary["n_prompts"] == 60 and summary["head_observed"] == 240.0
    np.testing.assert_array_equal(strategy.head.count, [60, 60, 60, 60])
    columns = config.catalog.columns
    table = load_routerbench(routerbench_dir, columns)
    x = embed_texts(table.prompts[::25], model=config.embedding.model, max_length=config.embedding.max_length)
    cold, _ = served()
    predicted = strategy.head.predict(x)[:, :, 0].mean(axis=0)
    catalog = cold.head.predict(x)[:, :, 0].mean(axis=0)
    # The served catalog's quality priors (0.8, 0.7, 0.6, 0.5) are guesses; the table's means replace them.
    rated_means = np.array([summary["experts"][e.name]["rated_quality"] for e in config.catalog.experts])
    np.testing.assert_allclose(catalog, [e.quality_prior for e in config.catalog.experts])
    assert np.all(np.abs(predicted - rated_means) < np.abs(catalog - rated_means))
    ctx = [RouteContext(text="", embedding=e, weights=config.router.default_weights) for e in x[:50]]
    assert set(cold.utility(ctx).argmax(axis=1)) == {2}  # cold: slot_13b_code, the catalog's best for its price
    assert (strategy.utility(ctx).argmax(axis=1) != 2).any()  # rated: where the table says otherwise
    # The checkpoint names the config's experts, the table columns they stand for and the head's layout.
    meta = strategy.load(out)
    assert meta["experts"] == config.catalog.names and meta["columns"] == columns
    assert meta["head"] == strategy.head.layout() and meta["metrics"]["experts"]["slot_7b"]["column"] == columns[3]


def test_rate_runs_from_the_command_line_and_says_what_is_wrong(routerbench_dir, tmp_path, capsys):
    out = tmp_path / "rl"
    assert main(["rate", "rl", "--data", str(routerbench_dir), "--out", str(out), "--limit", "20"]) == 0
    printed = capsys.readouterr().out
    assert "its head observed 20 prompts" in printed and "slot_7b" in printed and "checkpoint:" in printed
    assert (out / "meta.json").is_file()
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["experts"][0]["trained_as"] = "no/such-model"
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(raw))
    raw["router"]["strategies"]["moe"].pop("head")
    headless = tmp_path / "headless.yaml"
    headless.write_text(yaml.safe_dump(raw))
    cases = [
        (["--config", str(headless)], "has no `head`"),
        (["--config", str(tmp_path / "absent.yaml")], "does not exist"),
        (["--config", str(unknown)], r"no/such-model.* not in the data"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(["rate", "moe", "--data", str(routerbench_dir), "--out", str(tmp_path / "x"), *extra])
    assert not (tmp_path / "x").exists()


def test_write_priors_sets_the_rated_means_in_the_config_and_keeps_everything_else(routerbench_dir, tmp_path, capsys):
    config = tmp_path / "cpu.yaml"
    config.write_text(DEFAULT_CONFIG.read_text())
    out = tmp_path / "moe"
    argv = ["rate", "moe", "--data", str(routerbench_dir), "--out", str(out), "--limit", "40", "--config", str(config)]
    assert main([*argv, "--write-priors"]) == 0
    assert "wrote quality_prior in" in capsys.readouterr().out
    summary = yaml.safe_load((out / "meta.json").read_text())["metrics"]
    catalog = load_config(config).catalog  # still a valid serving config
    rated = {name: round(e["rated_quality"], 3) for name, e in summary["experts"].items()}
    assert {e.name: e.quality_prior for e in catalog.experts} == rated
    before, after = DEFAULT_CONFIG.read_text().splitlines(), config.read_text().splitlines()
    moved = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(moved) == len(rated)  # one line per expert, comments and all else kept
    assert all(a.split(":")[0] == b.split(":")[0] == "    quality_prior" for a, b in moved)
    # The checkpoint, rated against the old priors, serves under the new ones (its evidence is rebased).
    strategy = build_strategy("moe", catalog, {**load_config(config).router.strategies["moe"], "checkpoint": str(out)})
    strategy.setup()
    np.testing.assert_array_equal(strategy.head.count, [40, 40, 40, 40])

    # A config whose experts are not in block style (here all of it as JSON) is refused, and left as it was.
    flow = tmp_path / "flow.yaml"
    flow.write_text(json.dumps(yaml.safe_load(DEFAULT_CONFIG.read_text())))
    text = flow.read_text()
    with pytest.raises(SystemExit, match=r"cannot write quality_prior of \['slot_13b_code', .*block style"):
        main([*argv[:-1], str(flow), "--write-priors"])
    assert flow.read_text() == text


def test_write_priors_to_a_config_it_cannot_write_is_one_line_and_keeps_the_checkpoint(
    routerbench_dir, tmp_path, monkeypatch
):
    config = tmp_path / "cpu.yaml"
    config.write_text(text := DEFAULT_CONFIG.read_text())
    write_text = Path.write_text

    def read_only(self, *args, **kwargs):  # the tests run as root, where chmod does not stop a write
        if self == config:
            raise PermissionError(13, "Permission denied", str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", read_only)
    out = tmp_path / "moe"
    argv = ["rate", "moe", "--data", str(routerbench_dir), "--out", str(out), "--limit", "20", "--config", str(config)]
    with pytest.raises(SystemExit, match=r"Permission denied.*the checkpoint at .* is saved"):
        main([*argv, "--write-priors"])
    assert config.read_text() == text and (out / "meta.json").is_file()


def test_rate_from_an_offline_fit_keeps_its_network_and_seeds_its_head(routerbench_dir, tmp_path, capsys):
    """`routerllm train moe` then `routerllm rate moe --from FIT`: the warm start bench-online measures, as served."""
    table = tmp_path / "slice.csv"
    with open(routerbench_dir / "arc_challenge_train.csv", newline="", encoding="utf-8") as fh:
        csv.field_size_limit(1 << 30)
        reader = csv.DictReader(fh)
        rows = [row for _, row in zip(range(40), reader)]
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    fit, out = tmp_path / "fit", tmp_path / "warm-rated"
    train = ["train", "moe", "--data", str(table), "--experts", "seed4", "--out", str(fit), "--holdout", "0"]
    assert main([*train, "--epochs", "3", "--val-fraction", "0", "--no-progress"]) == 0
    assert main(["rate", "moe", "--data", str(table), "--from", str(fit), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "its head observed 40 prompts" in printed and "network_weight: 0.5 there" in printed  # cpu.yaml has 0

    warm, _ = served(fit)
    rated, _ = served(out)
    np.testing.assert_array_equal(warm.head.count, [0, 0, 0, 0])  # an offline fit holds no head statistics
    np.testing.assert_array_equal(rated.head.count, [40, 40, 40, 40])
    network = {k: v for k, v in warm.state_dict().items() if not k.startswith("head.")}
    kept = rated.state_dict()
    assert network and all(np.array_equal(np.asarray(v), np.asarray(kept[k])) for k, v in network.items())
    assert json.loads((out / "meta.json").read_text())["metrics"]["initial"].startswith(f"warm from {fit}")

    # A start that is not a moe checkpoint is refused by name, and nothing is written.
    assert main(["rate", "rl", "--data", str(table), "--out", str(tmp_path / "rl")]) == 0
    for start, message in ((tmp_path / "absent", "absent"), (tmp_path / "rl", "rl")):
        with pytest.raises(SystemExit, match=rf"--from {start}: .*{message}"):
            main(["rate", "moe", "--data", str(table), "--from", str(start), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_a_served_head_with_prompt_types_fits_them_on_the_rating_table(routerbench_dir, tmp_path):
    """`clusters` in a served head's config: `rate` fits the prompt types on the table (outcome_head.py), the
    checkpoint carries them, and a router configured without types refuses it by name."""
    plain = "moe: {quality_prior_weight: 1.0, seed: 0, head: {ridge: 30, blend: evidence}"
    text = Path(DEFAULT_CONFIG).read_text()
    assert plain in text
    config_path = tmp_path / "typed.yaml"
    config_path.write_text(text.replace(plain, plain[:-1] + ", center: true, clusters: 4}"))
    out = tmp_path / "moe"
    rate("moe", str(routerbench_dir), str(out), str(config_path), limit=60, seed=1)
    config = load_config(config_path)
    strategy = build_strategy("moe", config.catalog, {**config.router.strategies["moe"], "checkpoint": str(out)})
    strategy.setup()
    assert strategy.head.has_prototypes and strategy.head.prototypes.shape == (4, strategy.head.embedding_dim)
    assert strategy.load(out)["head"]["clusters"] == 4
    np.testing.assert_array_equal(strategy.head.count, [60, 60, 60, 60])
    with pytest.raises(CheckpointError, match="clusters: checkpoint 4, router '\\(absent\\)'"):
        served(out)  # configs/cpu.yaml's head has no types
