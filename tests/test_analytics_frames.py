"""Every report table to pandas and Arrow: names not codes, typed columns, missing extras."""

from __future__ import annotations

import builtins
from datetime import timedelta

import pytest

from buyerjourney import default_pipeline, presets, run
from buyerjourney.analytics import (
    COLUMN_TYPES,
    Outcomes,
    Tabular,
    backtest,
    forecast,
    funnel_breakdown,
    funnel_cohorts,
    funnel_report,
    handoff_report,
    simulate,
    threshold_candidates,
)
from buyerjourney.errors import MissingExtra

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

PIPELINE = default_pipeline(presets.get("waterfall"))


@pytest.fixture(scope="module")
def results() -> dict[str, Tabular]:
    sim = simulate(PIPELINE, leads=150, seed=3)
    engine = PIPELINE.engine()
    run(engine, enumerate(sim.items))
    records = engine.records
    funnel = PIPELINE.funnel
    outcomes = Outcomes.from_log(funnel, records)
    return {
        "report": funnel_report(funnel, records),
        "breakdown": funnel_breakdown(funnel, records, "source"),
        "cohorts": funnel_cohorts(funnel, records),
        "handoffs": handoff_report(funnel, records),
        "backtest": backtest(
            PIPELINE, sim.items, outcomes, threshold_candidates(PIPELINE, (40, 60))
        ),
        "forecast": forecast(funnel, records, weeks=3, runs=50),
    }


@pytest.mark.parametrize(
    "name", ["report", "breakdown", "cohorts", "handoffs", "backtest", "forecast"]
)
def test_every_table_converts_with_the_same_columns(results: dict[str, Tabular], name: str) -> None:
    result = results[name]
    assert result.TABLES
    for table in result.TABLES:
        typed = result.table(table)
        assert {kind for _, kind in typed.columns} <= set(COLUMN_TYPES)
        frame = result.to_pandas(table)
        arrow = result.to_arrow(table)
        names = [column for column, _ in typed.columns]
        assert list(frame.columns) == names
        assert arrow.column_names == names
        assert len(frame) == arrow.num_rows == len(typed.rows)


def test_stage_names_and_typed_columns(results: dict[str, Tabular]) -> None:
    report = results["report"]
    steps = report.to_pandas()
    assert list(steps["stage"]) == ["inquiry", "mql", "sal", "sql", "opportunity", "won"]
    assert str(steps["entered"].dtype) == "Int64"
    assert steps["converted"].isna().iloc[-1]  # the last step converts to nothing
    assert steps["step_conversion"].isna().iloc[0]
    assert str(steps["velocity"].dtype).startswith("timedelta64")
    arrow = report.to_arrow()
    assert arrow.schema.field("velocity").type == pa.duration("us")
    assert arrow.column("stage").to_pylist()[0] == "inquiry"
    first = report.steps[1]
    assert steps.loc[1, "time_in_stage_median"] == pd.Timedelta(first.time_in_stage.median)
    teams = results["handoffs"].to_pandas("teams")
    assert set(teams["team"]) <= {"marketing", "sales"}


def test_backtest_tables_for_the_chart(results: dict[str, Tabular]) -> None:
    result = results["backtest"]
    curve = result.to_pandas("curve")
    assert list(curve.columns) == [
        "kind",
        "candidate",
        "threshold",
        "precision",
        "recall",
        "handed_off",
    ]
    assert list(curve["threshold"]) == [40.0, 60.0]
    candidates = result.to_arrow()
    assert candidates.column("best").to_pylist().count(True) <= 1
    weekly = result.to_pandas("weekly")
    assert set(weekly["candidate"]) == {"score>=40", "score>=60"}


def test_an_empty_report_keeps_its_schema() -> None:
    report = funnel_report(PIPELINE.funnel, [])
    exits = report.to_arrow("exits")
    assert exits.num_rows == 0
    assert exits.schema.field("leads").type == pa.int64()


def test_an_unknown_table_is_named() -> None:
    with pytest.raises(ValueError, match="its tables are: steps"):
        funnel_report(PIPELINE.funnel, []).to_pandas("nope")


def test_polars_reads_the_arrow_table(results: dict[str, Tabular]) -> None:
    polars = pytest.importorskip("polars")
    frame = polars.from_arrow(results["forecast"].to_arrow())
    assert frame.columns[0] == "week"


@pytest.mark.parametrize(
    ("module", "extra", "method"),
    [("pandas", "frames", "to_pandas"), ("pyarrow", "arrow", "to_arrow")],
)
def test_a_missing_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, module: str, extra: str, method: str
) -> None:
    real = builtins.__import__

    def fake(name: str, *args: object, **kwargs: object) -> object:
        if name == module or name.startswith(module + "."):
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake)
    import importlib  # noqa: PLC0415

    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name, package=None: fake(name),
    )
    report = funnel_report(PIPELINE.funnel, [])
    with pytest.raises(MissingExtra, match=rf"pip install 'buyerjourney\[{extra}\]'"):
        getattr(report, method)()


def test_durations_are_timedeltas_in_arrow() -> None:
    sim = simulate(PIPELINE, leads=30, seed=1)
    engine = PIPELINE.engine()
    run(engine, enumerate(sim.items))
    table = funnel_report(PIPELINE.funnel, engine.records).to_arrow("durations")
    values = table.column("duration").to_pylist()
    assert values
    assert all(isinstance(v, timedelta) for v in values)
