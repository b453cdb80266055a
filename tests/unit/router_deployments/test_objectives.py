"""merge_weights: a request's weights over the config's defaults."""

from router_deployments.objectives import ObjectiveWeights, merge_weights

DEFAULTS = ObjectiveWeights(quality=1.0, cost=0.2, carbon=0.1, latency=0.05)


def test_a_request_that_sets_one_weight_keeps_the_defaults_of_the_others():
    merged = merge_weights(DEFAULTS, ObjectiveWeights(cost=1.0))
    assert merged.model_dump() == {"quality": 1.0, "cost": 1.0, "carbon": 0.1, "latency": 0.05}
    assert merge_weights(DEFAULTS, {"quality": 0.0}).model_dump() == {
        "quality": 0.0,
        "cost": 0.2,
        "carbon": 0.1,
        "latency": 0.05,
    }


def test_no_weights_are_the_defaults_and_every_weight_set_overrides_them_all():
    assert merge_weights(DEFAULTS, None) == DEFAULTS
    full = {"quality": 0.5, "cost": 0.0, "carbon": 0.0, "latency": 0.0}
    assert merge_weights(DEFAULTS, full).model_dump() == full
    assert DEFAULTS.model_dump() == {"quality": 1.0, "cost": 0.2, "carbon": 0.1, "latency": 0.05}  # not mutated
