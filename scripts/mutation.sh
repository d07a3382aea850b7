#!/usr/bin/env bash
# Mutation testing of buyerjourney's core modules with mutmut.
#
# Not part of CI: a full run takes a while (see docs/mutation.md for the last
# numbers). Run it by hand, from the repository root or anywhere:
#
#     scripts/mutation.sh                   # every core module, one after another
#     scripts/mutation.sh funnel table      # only these modules
#
# What it does:
#   1. creates a separate virtualenv (default .mutation/venv) with the package,
#      pytest, Hypothesis and a pinned mutmut, so the dev venv stays untouched;
#   2. for each module, copies src/, tests/ and pyproject.toml into
#      .mutation/<module>/, appends a [tool.mutmut] table that mutates only that
#      module and runs the fast core test files, and runs `mutmut run`;
#   3. prints killed / survived / timeout / other and the score per module and
#      overall. Score = (killed + timeout) / all mutants of the module.
#
# Inspect a module's survivors afterwards with:
#
#     cd .mutation/funnel && ../venv/bin/mutmut results
#     cd .mutation/funnel && ../venv/bin/mutmut show <mutant name>
#     cd .mutation/funnel && ../venv/bin/mutmut browse
#
# Environment variables:
#   MUTATION_VENV       virtualenv to create/use       (default: .mutation/venv)
#   MUTATION_WORK       folder for the per-module runs (default: .mutation)
#   MUTATION_JOBS       mutmut worker processes        (default: 2)
#   MUTATION_KEEP=1     keep a module's earlier run and re-test only its survivors
#                       (for new tests; after a change to src/, or to which functions
#                       an existing test calls, run afresh)
#   HYPOTHESIS_PROFILE  Hypothesis profile from tests/conftest.py (default: default)
# Hypothesis runs with a fixed seed (--hypothesis-seed=0) so that two runs of the
# same code and tests give the same verdicts.
set -euo pipefail

MUTMUT_VERSION=3.8.1
ALL_MODULES=(funnel table journey engine owners hooks events)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${MUTATION_WORK:-$root/.mutation}"
venv="${MUTATION_VENV:-$work/venv}"
jobs="${MUTATION_JOBS:-2}"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-default}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Test files run against every module's mutants: the fast unit and property tests
# of the core (the slow differential, strategy, CLI, docs and data-set tests stay
# out), plus the tests written to kill surviving mutants. mutmut runs, for each
# mutant, only those of these tests that call the mutated function.
CORE_TESTS=(
    tests/test_funnel.py
    tests/test_table.py
    tests/test_machine.py
    tests/test_engine.py
    tests/test_engine_properties.py
    tests/test_events_journey.py
    tests/test_owners.py
    tests/test_errors.py
    tests/test_public_api.py
)

modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
    modules=("${ALL_MODULES[@]}")
fi
for module in "${modules[@]}"; do
    if [ ! -f "$root/src/buyerjourney/$module.py" ]; then
        echo "error: no module src/buyerjourney/$module.py" >&2
        exit 2
    fi
done

# ---------------------------------------------------------------- virtualenv
mkdir -p "$work"
if [ ! -x "$venv/bin/mutmut" ]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$root[testing]" "pytest>=8" "mutmut==$MUTMUT_VERSION"
fi
# mutmut reads its configuration when it starts, even for --version: run it from the root.
(cd "$root" && "$venv/bin/mutmut" --version)

# ---------------------------------------------------------------- runs
toml_list() {
    local out="" item
    for item in "$@"; do
        out+="\"$item\", "
    done
    printf '[%s]' "${out%, }"
}

summary="$work/summary.tsv"
printf 'module\tmutants\tkilled\tsurvived\ttimeout\tother\tscore\n' >"$summary"

for module in "${modules[@]}"; do
    dir="$work/$module"
    echo
    echo "== $module: mutating src/buyerjourney/$module.py (log: $dir/mutmut.log)"
    if [ "${MUTATION_KEEP:-0}" != 1 ] || [ ! -d "$dir/mutants" ]; then
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    # A fresh copy of the code and tests (the mutants/ folder inside is mutmut's).
    rm -rf "$dir/src" "$dir/tests"
    (cd "$root" && tar --exclude=__pycache__ --exclude=.hypothesis -cf - src tests pyproject.toml) \
        | tar -xf - -C "$dir"

    # Select the core test files and the kill files by ignoring every other test file,
    # so that adding a test_mutation_kills_*.py file does not change mutmut's config
    # (a changed test selection makes mutmut drop every earlier result).
    ignores=()
    for file in "$dir"/tests/test_*.py; do
        name="tests/$(basename "$file")"
        case " ${CORE_TESTS[*]} " in *" $name "*) continue ;; esac
        case "$name" in tests/test_mutation_kills_*) continue ;; esac
        ignores+=("--ignore=$name")
    done
    cat >>"$dir/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["src/buyerjourney/$module.py"]
pytest_add_cli_args = $(toml_list --hypothesis-seed=0 -p no:cacheprovider "${ignores[@]}")
pytest_add_cli_args_test_selection = ["tests"]
EOF

    again=()
    if [ "${MUTATION_KEEP:-0}" = 1 ] && [ -f "$dir/results.txt" ]; then
        mapfile -t again < <(
            awk '/: / && $NF != "killed" && $NF != "timeout" { sub(/:$/, "", $1); print $1 }' \
                "$dir/results.txt"
        )
        echo "   re-testing ${#again[@]} earlier survivors"
        if [ ${#again[@]} -eq 0 ]; then
            continue_run=0
        fi
    fi
    if [ "${continue_run:-1}" = 1 ]; then
        (cd "$dir" && "$venv/bin/mutmut" run --max-children "$jobs" "${again[@]}") >"$dir/mutmut.log" 2>&1 || {
            echo "error: mutmut failed for $module; the end of its log:" >&2
            tail -c 3000 "$dir/mutmut.log" >&2
            exit 1
        }
    fi
    unset continue_run
    (cd "$dir" && "$venv/bin/mutmut" results --all true) >"$dir/results.txt"
    awk -v module="$module" '
        /: / {
            status = $NF; n++
            if (status == "killed") k++
            else if (status == "survived") s++
            else if (status == "timeout") t++
            else o++
        }
        END {
            score = n ? 100 * (k + t) / n : 0
            printf "%s\t%d\t%d\t%d\t%d\t%d\t%.1f%%\n", module, n, k, s, t, o, score
        }' "$dir/results.txt" >>"$summary"
    tail -n 1 "$summary"
done

echo
echo "== mutation score per module (score = (killed + timeout) / mutants)"
awk -F'\t' '
    { printf "%-10s %8s %8s %8s %8s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7 }
    NR > 1 { n += $2; k += $3; s += $4; t += $5; o += $6 }
    END {
        printf "%-10s %8d %8d %8d %8d %8d %7.1f%%\n", "overall", n, k, s, t, o, (n ? 100 * (k + t) / n : 0)
    }' "$summary"
echo
echo "Survivors of a module: cd $work/<module> && $venv/bin/mutmut results"
