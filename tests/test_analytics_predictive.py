"""The predictive score against hand-computed naive Bayes probabilities (DOMAIN §4).

The history: three won and two lost leads.

=========  ==========  =======  =======
outcome    segment     country
=========  ==========  =======  =======
won        enterprise  FR
won        enterprise  DE
won        smb         FR
lost       smb         FR
lost       smb         DE
=========  ==========  =======  =======

So W = 3, L = 2, and both fields are known for every lead (W_f = 3, L_f = 2).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import Engine, Lead, Score, ThresholdPolicy, Touch, presets
from buyerjourney.analytics import (
    SMOOTHING,
    PredictiveModel,
    ValueCount,
    training_examples,
)
from buyerjourney.scoring import Scorer
from test_analytics_helpers import Log, h, trial_funnel

HISTORY = [
    ({"segment": "enterprise", "country": "FR"}, True),
    ({"segment": "enterprise", "country": "DE"}, True),
    ({"segment": "smb", "country": "FR"}, True),
    ({"segment": "smb", "country": "FR"}, False),
    ({"segment": "smb", "country": "DE"}, False),
]


@pytest.fixture
def model() -> PredictiveModel:
    return PredictiveModel.from_examples(HISTORY)


def test_the_counts() -> None:
    model = PredictiveModel.from_examples(HISTORY)
    assert (model.won, model.lost) == (3, 2)
    assert model.fields == ("segment", "country")
    assert model.counts == (
        ValueCount("segment", "enterprise", 2, 0),
        ValueCount("segment", "smb", 1, 2),
        ValueCount("country", "FR", 2, 1),
        ValueCount("country", "DE", 1, 1),
    )
    assert SMOOTHING == 0.1


def test_the_prior_smooths_the_outcome_counts(model: PredictiveModel) -> None:
    assert model.predict({}).prior == pytest.approx(3.1 / 5.2)
    assert model.predict({}).probability == pytest.approx(3.1 / 5.2)


def test_a_likely_winner(model: PredictiveModel) -> None:
    # S(won)  = 3.1 x 2.1/3.1 x 2.1/3.1;  S(lost) = 2.1 x 0.1/2.1 x 1.1/2.1
    s_won = 3.1 * (2.1 / 3.1) * (2.1 / 3.1)
    s_lost = 2.1 * (0.1 / 2.1) * (1.1 / 2.1)
    prediction = model.predict({"segment": "enterprise", "country": "FR"})
    assert prediction.probability == pytest.approx(s_won / (s_won + s_lost))
    assert prediction.probability == pytest.approx(0.964486, abs=1e-6)


def test_a_likely_loser(model: PredictiveModel) -> None:
    s_won = 3.1 * (1.1 / 3.1) * (1.1 / 3.1)
    s_lost = 2.1 * (2.1 / 2.1) * (1.1 / 2.1)
    prediction = model.predict({"segment": "smb", "country": "DE"})
    assert prediction.probability == pytest.approx(s_won / (s_won + s_lost))
    assert prediction.probability == pytest.approx(0.261905, abs=1e-6)


def test_factors_weigh_the_log_likelihood_ratio(model: PredictiveModel) -> None:
    prediction = model.predict({"segment": "enterprise", "country": "FR"})
    by_field = {f.field: f for f in prediction.factors}
    assert by_field["segment"].weight == pytest.approx(math.log((2.1 / 3.1) / (0.1 / 2.1)))
    assert by_field["country"].weight == pytest.approx(math.log((2.1 / 3.1) / (1.1 / 2.1)))
    assert by_field["segment"].odds_ratio == pytest.approx(21 * 2.1 / 3.1)
    assert (by_field["segment"].won, by_field["segment"].lost) == (2, 0)


def test_top_positive_and_negative_factors(model: PredictiveModel) -> None:
    winner = model.predict({"segment": "enterprise", "country": "FR"})
    assert [f.label for f in winner.positive] == ["segment=enterprise", "country=FR"]
    assert winner.negative == ()
    loser = model.predict({"segment": "smb", "country": "DE"})
    assert loser.positive == ()
    assert [f.label for f in loser.negative] == ["segment=smb", "country=DE"]  # strongest first
    mixed = model.predict({"segment": "enterprise", "country": "DE"})
    assert [f.label for f in mixed.positive] == ["segment=enterprise"]
    assert [f.label for f in mixed.negative] == ["country=DE"]


def test_top_limits_the_factors_listed() -> None:
    model = PredictiveModel.from_examples(HISTORY, top=1)
    prediction = model.predict({"segment": "enterprise", "country": "FR"})
    assert [f.label for f in prediction.positive] == ["segment=enterprise"]
    assert len(prediction.factors) == 2


def test_missing_fields_and_unseen_values_say_nothing(model: PredictiveModel) -> None:
    alone = model.predict({"segment": "enterprise"})
    unseen = model.predict({"segment": "enterprise", "country": "ES", "size": 10})
    assert unseen.probability == alone.probability
    assert unseen.unseen == ("country",)
    s_won, s_lost = 3.1 * (2.1 / 3.1), 2.1 * (0.1 / 2.1)
    assert alone.probability == pytest.approx(s_won / (s_won + s_lost))


def test_fields_limit_what_the_model_learns() -> None:
    model = PredictiveModel.from_examples(HISTORY, fields=("country",))
    assert model.fields == ("country",)
    assert {c.field for c in model.counts} == {"country"}
    assert model.predict({"segment": "enterprise"}).factors == ()


def test_true_is_not_one() -> None:
    model = PredictiveModel.from_examples([({"flag": True}, True), ({"flag": 1}, False)])
    assert len(model.counts) == 2
    assert model.predict({"flag": True}).probability > 0.5


def test_unhashable_values_are_counted() -> None:
    model = PredictiveModel.from_examples([({"tags": {"a": 1}}, True), ({"tags": {"a": 1}}, True)])
    assert model.counts[0].won == 2


# ---------------------------------------------------------------- as a scorer


def test_the_score_is_the_probability_in_percent(model: PredictiveModel) -> None:
    attributes = {"segment": "enterprise", "country": "FR"}
    score = model.score(attributes)
    assert score.value == round(100 * model.predict(attributes).probability, 6)
    assert score.value == pytest.approx(96.4486, abs=1e-4)


def test_the_breakdown_adds_up_to_the_value(model: PredictiveModel) -> None:
    for attributes in (
        {"segment": "enterprise", "country": "FR"},
        {"segment": "smb", "country": "DE"},
        {"segment": "enterprise", "country": "DE"},
        {},
    ):
        score = model.score(attributes)
        assert round(math.fsum(i.points for i in score.breakdown), 6) == score.value


def test_the_breakdown_starts_with_the_prior_and_signs_follow_the_factors(
    model: PredictiveModel,
) -> None:
    score = model.score({"segment": "enterprise", "country": "DE"})
    rules = [item.rule for item in score.breakdown]
    assert rules == ["prior", "segment=enterprise", "country=DE"]
    prior, positive, negative = (item.points for item in score.breakdown)
    assert prior == pytest.approx(100 * 3.1 / 5.2, abs=1e-6)
    assert positive > 0 > negative
    assert score.breakdown[1].detail == "2 won, 0 lost with it; odds x14.2"


def test_factors_share_the_change_in_proportion_to_their_weight(model: PredictiveModel) -> None:
    prediction = model.predict({"segment": "enterprise", "country": "FR"})
    change = 100 * (prediction.probability - prediction.prior)
    total = sum(f.weight for f in prediction.factors)
    for factor in prediction.factors:
        assert factor.points == pytest.approx(change * factor.weight / total)


def test_factors_that_cancel_out_still_get_points() -> None:
    model = PredictiveModel.from_examples(
        [
            ({"a": "x", "b": "u"}, True),
            ({"a": "z", "b": "u"}, True),
            ({"a": "z", "b": "v"}, False),
            ({"a": "t", "b": "u"}, False),
        ]
    )
    # a=x: 1 of 2 won, 0 of 2 lost; b=v: 0 of 2 won, 1 of 2 lost: weights +-ln 11
    prediction = model.predict({"a": "x", "b": "v"})
    assert prediction.probability == pytest.approx(0.5)
    assert [f.weight for f in prediction.factors] == pytest.approx([math.log(11), -math.log(11)])
    # no change to share: each gets its weight times the slope at the prior, 0.25
    assert [f.points for f in prediction.factors] == pytest.approx(
        [25 * math.log(11), -25 * math.log(11)]
    )
    score = model.score({"a": "x", "b": "v"})
    assert score.value == 50.0
    assert [i.rule for i in score.breakdown] == ["prior", "a=x", "b=v"]


def test_the_scale_may_be_one() -> None:
    model = PredictiveModel.from_examples(HISTORY, scale=1)
    assert model.score({"segment": "smb", "country": "DE"}).value == pytest.approx(0.261905)


def test_the_model_implements_the_scorer_protocol(model: PredictiveModel) -> None:
    assert isinstance(model, Scorer)
    lead = Lead("x", {"segment": "enterprise", "country": "FR"})
    score = model(lead, h(0))
    assert isinstance(score, Score)
    assert score == model.score(lead.attributes)


def test_the_model_drives_a_threshold_policy(model: PredictiveModel) -> None:
    funnel = presets.demand_waterfall()
    engine = Engine(
        funnel, scorer=model, policy=ThresholdPolicy(90, "qualify", stages=("inquiry",))
    )
    engine.ingest_one(Touch("t1", "big", h(0), "visit", attributes={"segment": "enterprise"}))
    engine.ingest_one(Touch("t2", "small", h(1), "visit", attributes={"segment": "smb"}))
    assert engine.journey("big").stage == "mql"
    assert engine.journey("small").stage == "inquiry"
    assert engine.journey("big").score == model.score({"segment": "enterprise"}).value


# ---------------------------------------------------------------- training from a log


def test_training_examples_from_a_log() -> None:
    funnel = presets.seed()
    log = Log(funnel)
    log.create("won", 0, {"segment": "enterprise"}).move("won", 1, "consideration")
    log.move("won", 2, "conversion").move("won", 3, "churned")  # churned, but was won
    log.create("lost", 0, {"segment": "smb"}).move("lost", 4, "lost")
    log.create("open", 0, {"segment": "smb"}).move("open", 5, "consideration")
    examples = training_examples(funnel, log.records)
    assert [(dict(a), won) for a, won in examples] == [
        ({"segment": "enterprise"}, True),
        ({"segment": "smb"}, False),
    ]
    assert training_examples(funnel, log.records, as_of=h(1.5)) == ()
    model = PredictiveModel.from_log(funnel, log.records)
    assert (model.won, model.lost) == (1, 1)
    assert model.predict({"segment": "enterprise"}).probability == pytest.approx(
        (1.1 * 1.1 / 1.1) / (1.1 * 1.1 / 1.1 + 1.1 * 0.1 / 1.1)
    )


def test_training_from_a_log_as_of_a_date() -> None:
    log = Log(trial_funnel())
    log.create("x", 0, {"segment": "a"}).move("x", 1, "consideration").move("x", 2, "conversion")
    assert PredictiveModel.from_log(log.funnel, log.records, as_of=h(1)).won == 0
    assert PredictiveModel.from_log(log.funnel, log.records).won == 1


# ---------------------------------------------------------------- values and errors


def test_round_trip_through_json(model: PredictiveModel) -> None:
    data = json.loads(json.dumps(model.to_dict()))
    assert PredictiveModel.from_dict(data) == model


def test_prediction_output(model: PredictiveModel) -> None:
    prediction = model.predict({"segment": "enterprise", "country": "DE"})
    text = prediction.format()
    assert text.startswith("likelihood to win: ")
    assert "segment=enterprise: odds x14.23 (2 won, 0 lost)" in text
    data = json.loads(json.dumps(prediction.to_dict()))
    assert data["positive"] == ["segment=enterprise"]
    assert data["negative"] == ["country=DE"]


def test_an_empty_history_predicts_even_odds() -> None:
    model = PredictiveModel.from_examples([])
    assert model.predict({"segment": "x"}).probability == 0.5
    assert model.score({}).value == 50.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"won": -1, "lost": 0, "fields": (), "counts": ()}, ValueError, "'won'"),
        (
            {"won": 1, "lost": 0, "fields": (), "counts": (ValueCount("a", 1, 1, 0),)},
            ValueError,
            "'fields'",
        ),
        (
            {
                "won": 1,
                "lost": 0,
                "fields": ("a",),
                "counts": (ValueCount("a", 1, 1, 0), ValueCount("a", 1, 0, 0)),
            },
            ValueError,
            "twice",
        ),
        (
            {"won": 1, "lost": 0, "fields": ("a",), "counts": (ValueCount("a", 1, 2, 0),)},
            ValueError,
            "more than the totals",
        ),
        ({"won": 1, "lost": 0, "fields": "a", "counts": ()}, TypeError, "not a str"),
        ({"won": 0, "lost": 0, "fields": (), "counts": (), "scale": 0}, ValueError, "'scale'"),
    ],
)
def test_invalid_models_are_refused(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        PredictiveModel(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("example", [({"a": 1},), ({"a": 1}, "won"), ("a", True)])
def test_bad_examples_are_refused(example: object) -> None:
    with pytest.raises(TypeError, match=r"examples\[0\]"):
        PredictiveModel.from_examples([example])  # type: ignore[list-item]


# ---------------------------------------------------------------- properties

values = st.sampled_from(("a", "b", "c"))
attributes = st.dictionaries(st.sampled_from(("f", "g", "h")), values, max_size=3)


@given(st.lists(st.tuples(attributes, st.booleans()), max_size=30), attributes)
def test_scores_are_probabilities_whose_breakdown_adds_up(
    history: list[tuple[dict[str, str], bool]], lead: dict[str, str]
) -> None:
    model = PredictiveModel.from_examples(history)
    prediction = model.predict(lead)
    assert 0 <= prediction.probability <= 1
    assert 0 <= prediction.prior <= 1
    score = model.score(lead)
    assert 0 <= score.value <= 100
    assert score.value == round(100 * prediction.probability, 6)
    assert round(math.fsum(i.points for i in score.breakdown), 6) == score.value
    for factor in prediction.factors:
        assert factor.points * factor.weight >= 0  # a factor's points have its weight's sign
    assert [f.weight for f in prediction.factors] == sorted(
        (f.weight for f in prediction.factors), reverse=True
    )


def test_scoring_time_does_not_matter(model: PredictiveModel) -> None:
    lead = Lead("x", {"segment": "smb"})
    assert model(lead, h(0)) == model(lead, h(0) + timedelta(days=400))
