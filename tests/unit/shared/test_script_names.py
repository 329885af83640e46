"""The Lua scripts read their KEYS and ARGV by name (shared/jobs.py's `lua_names`): a name the script reads but the
table does not declare would be nil in Lua, not an error, so each one is checked here against the declared ones."""

from __future__ import annotations

import re

import pytest

from shared import events, job_start, jobs, source_keys


def read_names(script: str, table: str) -> set[str]:
    return set(re.findall(rf"\b{table}\.(\w+)", script))


def declared(script: str, table: str) -> set[str]:
    (line,) = re.findall(rf"^local {table} = \{{(.*)\}}$", script, flags=re.MULTILINE)
    return set(re.findall(r"(\w+) = ", line))


@pytest.mark.parametrize(
    ("script", "tables"),
    [
        (jobs._TRANSITION, ("job", "argv")),
        (jobs._SET_STAGE, ("job",)),
        (job_start._START, ("key", "argv")),
        (source_keys._PUBLISH, ("key", "argv")),
    ],
)
def test_every_name_a_script_reads_is_declared(script: str, tables: tuple[str, ...]) -> None:
    for table in tables:
        assert read_names(script, table) and read_names(script, table) <= declared(script, table), table


def test_the_shared_functions_read_only_the_job_keys() -> None:
    # `record` and `transition` read the job's keys from the table they are given: the start script passes `key`.
    fragments = events.LUA_RECORD + jobs.LUA_TRANSITION
    assert read_names(fragments, "job") <= set(jobs.JobKeys._fields) <= declared(job_start._START, "key")


def test_values_come_in_the_declared_order_and_must_all_be_named() -> None:
    assert jobs.lua_names("argv", "ARGV", ("a", "b")) == "local argv = {a = ARGV[1], b = ARGV[2]}\n"
    assert jobs.lua_values(("a", "b"), b=2, a=1) == [1, 2]
    with pytest.raises(TypeError):
        jobs.lua_values(("a", "b"), a=1)
    with pytest.raises(TypeError):
        jobs.lua_values(("a",), a=1, c=3)
