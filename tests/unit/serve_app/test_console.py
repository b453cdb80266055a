"""The console's files and summary: every shipped file is served with its media type and nothing else is, every
module a script imports is shipped, and GET /v1/router reports what the config enables."""

import re

import pytest

from serve_app.config import AppConfig
from serve_app.console import CONSOLE_DIR, CONSOLE_FILES, console_file, router_summary
from serve_app.errors import APIError

EXPERT = dict(
    backend={"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"},
    params_b=1,
    price_in_per_1k=0.001,
    price_out_per_1k=0.002,
    energy_per_token_j=1.0,
    expected_latency_s=1.0,
    quality_prior=0.5,
)


def test_every_console_file_is_listed_and_exists():
    shipped = {p.name for p in CONSOLE_DIR.iterdir() if p.is_file()}
    assert shipped == set(CONSOLE_FILES)


def test_every_imported_module_is_shipped():
    for script in CONSOLE_DIR.glob("*.js"):
        for module in re.findall(r'from "\./([\w.-]+)"', script.read_text()):
            assert module in CONSOLE_FILES, f"{script.name} imports {module}, which the console does not serve"


def test_console_file_serves_listed_files_with_their_media_type():
    response = console_file("main.js")
    assert response.media_type.startswith("text/javascript")
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("name", ["../config.py", "secrets.txt", ""])
def test_console_file_refuses_anything_else(name):
    with pytest.raises(APIError) as error:
        console_file(name)
    assert error.value.status == 404


def test_router_summary_lists_strategies_and_learned_ones(tmp_path):
    config = AppConfig.model_validate(
        {
            "router": {"strategies": {"dummy": {}, "moe": {"hidden": [4]}}, "default_strategy": "moe"},
            "carbon": {"grid_intensity_g_per_kwh": 250},
            "experts": [{"name": "a", **EXPERT}, {"name": "b", **EXPERT}],
            "learner": {
                "training": {
                    "store_path": str(tmp_path / "o.db"),
                    "checkpoint_dir": str(tmp_path / "p"),
                    "strategies": {"moe": {"config": {"hidden": [4]}}},
                }
            },
        }
    )
    summary = router_summary(config)
    assert summary == {
        "strategies": ["dummy", "moe"],
        "default_strategy": "moe",
        "default_weights": {"quality": 1.0, "cost": 0.0, "carbon": 0.0, "latency": 0.0},
        "learned_online": ["moe"],
        "carbon_intensity_g_per_kwh": 250.0,
    }
