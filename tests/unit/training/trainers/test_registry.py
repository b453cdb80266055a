"""The trainer registry (training/trainers/__init__.py): names, missing modules and options."""

from __future__ import annotations

import pytest

from training import trainers
from training.trainers import TRAINERS, require_trainer, trainer_module, trainer_options


def test_every_registered_trainer_has_the_contract():
    for name in TRAINERS:
        module = require_trainer(name)
        assert callable(module.add_arguments) and callable(module.fit_from_table), name


def test_an_unknown_name_is_a_clear_error_that_lists_the_trainers():
    for lookup in (trainer_module, require_trainer):
        with pytest.raises(
            KeyError, match=r"Invalid trainer 'nope'. Available trainers are \['bert', 'knn', 'moe', 'rl'\]"
        ):
            lookup("nope")


def test_a_registered_trainer_not_written_yet(monkeypatch):
    monkeypatch.setitem(trainers.TRAINERS, "ghost", "training.trainers.no_such_module")
    assert trainer_module("ghost") is None
    with pytest.raises(
        ModuleNotFoundError, match=r"the trainer of 'ghost' \(training.trainers.no_such_module\) does not"
    ):
        require_trainer("ghost")


def test_trainer_options_are_the_defaults_overridden_by_flags():
    knn = require_trainer("knn")
    assert trainer_options(knn) == {"k": knn.KnnConfig().k}
    assert trainer_options(knn, ["--k", "7"]) == {"k": 7}
    moe = require_trainer("moe")
    options = trainer_options(moe, ["--top-k", "2", "--learning_rate", "0.01", "--no-progress"])
    assert options == {**vars(moe.Args()), "top_k": 2, "learning_rate": 0.01, "progress": False}


def test_trainer_options_refuse_unknown_options_and_bad_values():
    knn = require_trainer("knn")
    with pytest.raises(ValueError, match=r"has no option \['--kk', '3'\]. Its options are \['--k'\]"):
        trainer_options(knn, ["--kk", "3"])
    with pytest.raises(ValueError, match="invalid int value: 'many'"):
        trainer_options(knn, ["--k", "many"])
    with pytest.raises(ValueError, match="invalid choice: 'mse'"):
        trainer_options(require_trainer("bert"), ["--loss", "mse"])
