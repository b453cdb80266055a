"""The one NAME.OPTION=VALUE reader and the one dataclass-to-flags converter (training/options.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from training.options import add_dataclass_arguments, dotted_values, flag_values, parse_dotted


def test_dotted_pairs_become_flags_per_name_in_order():
    pairs = ["knn.k=20", "rl.total-steps=500", "knn.k=5", "rl.hidden=64,64", "complexity.model=a=b"]
    assert parse_dotted(pairs) == {
        "knn": ["--k", "20", "--k", "5"],
        "rl": ["--total-steps", "500", "--hidden", "64,64"],
        "complexity": ["--model", "a=b"],  # only the first '=' splits
    }
    assert parse_dotted([]) == {}


@pytest.mark.parametrize("pair", ["k=3", "knn.k", ".k=3", "knn.=3", "knn=3", ""])
def test_a_malformed_pair_names_the_flag_and_the_expected_shape(pair):
    with pytest.raises(ValueError, match=r"Invalid --trainer .*expected NAME\.OPTION=VALUE"):
        parse_dotted(["knn.k=1", pair], "--trainer")


def test_flag_values_read_json_else_text_with_underscored_names():
    flags = ["--tau", "0.05", "--hidden", "[64, 32]", "--double-q", "true", "--model", "./clf", "--name", "1e-3x"]
    assert flag_values(flags) == {"tau": 0.05, "hidden": [64, 32], "double_q": True, "model": "./clf", "name": "1e-3x"}
    assert flag_values(["--k", "1", "--k", "2"]) == {"k": 2}  # the later one wins, as on a command line
    assert flag_values([]) == {}


def test_dotted_values_is_parse_then_read():
    assert dotted_values(["rl.tau=0.05", "moe.top_k=2", "rl.seed=3"]) == {
        "rl": {"tau": 0.05, "seed": 3},
        "moe": {"top_k": 2},
    }
    with pytest.raises(ValueError, match="Invalid --set 'tau=1'"):
        dotted_values(["tau=1"])


@dataclass
class Args:
    epochs: int = field(default=3, metadata={"help": "passes"})
    learning_rate: float = field(default=1e-3, metadata={"help": "step size"})
    loss: str = field(default="ce", metadata={"choices": ("ce", "focal"), "help": "training loss"})
    progress: bool = field(default=True, metadata={"help": "show bars"})
    full_information: bool = field(default=False)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_arguments(p, Args)
    return p


def test_converter_gives_one_flag_per_field_with_defaults_and_types():
    assert vars(parser().parse_args([])) == {
        "epochs": 3,
        "learning_rate": 1e-3,
        "loss": "ce",
        "progress": True,
        "full_information": False,
    }
    ns = parser().parse_args(["--epochs", "7", "--learning_rate", "0.5", "--loss", "focal"])
    assert (ns.epochs, ns.learning_rate, ns.loss) == (7, 0.5, "focal")
    assert isinstance(ns.epochs, int) and isinstance(ns.learning_rate, float)
    help_text = parser().format_help()
    assert "passes (default: 3)" in help_text and "{ce,focal}" in help_text


def test_converter_bools_are_switches_in_both_spellings():
    assert parser().parse_args(["--no-progress"]).progress is False
    assert parser().parse_args(["--full-information"]).full_information is True
    assert parser().parse_args(["--full_information"]).full_information is True
    with pytest.raises(SystemExit):  # a switch takes no value
        parser().parse_args(["--progress", "false"])


def test_converter_enforces_choices_and_types():
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'mse'"):
        parser().parse_args(["--loss", "mse"])
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):
        parser().parse_args(["--epochs", "2.5"])


def test_converter_refuses_a_field_type_it_cannot_read():
    @dataclass
    class Bad:
        sizes: list = field(default_factory=list)

    with pytest.raises(TypeError, match="Bad.sizes"):
        add_dataclass_arguments(argparse.ArgumentParser(), Bad)
