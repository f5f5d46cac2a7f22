"""The JSON Lines sink: lines appended per batch, the synced length as the record, truncation to
it at recovery, so that crashed runs and their replays leave each epoch's lines once."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.connectors import JsonLinesSink, TransactionalSink
from sage_streams.errors import CheckpointError, StreamError
from tests.connectors.sinks import CRASHES, Crash, epochs_of, open_files, run, sink_threads


def lines(path: Path) -> list[Any]:
    """The file's values; its lines end at "\n" only (a value may hold a "\u2028")."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n")[:-1]]


async def test_epochs_are_appended_and_the_record_is_the_synced_length(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    assert sink.guarantee == "exactly_once"
    assert isinstance(sink, TransactionalSink)
    await sink.recover(None, None)
    assert path.read_bytes() == b""
    await sink.write([{"a": "é"}, 1], 1)
    await sink.write([None], 1)
    assert await sink.pre_commit(1) == len('{"a": "é"}\n1\nnull\n'.encode())
    await sink.commit(1)
    assert await sink.pre_commit(2) == path.stat().st_size  # an epoch with no items
    await sink.close()
    assert path.read_text(encoding="utf-8") == '{"a": "é"}\n1\nnull\n'


async def test_recover_truncates_to_the_committed_length_and_appends_after_it(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("1\n2\n3\n")
    sink = JsonLinesSink(path)
    await sink.recover(4, 2)
    await sink.write([4], 5)
    assert await sink.pre_commit(5) == 4
    await sink.close()
    assert lines(path) == [1, 4]
    sink = JsonLinesSink(path)
    await sink.recover(None, None)
    await sink.close()
    assert path.read_bytes() == b""


async def test_a_file_shorter_than_its_record_or_a_bad_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("1\n")
    sink = JsonLinesSink(path)
    with pytest.raises(
        CheckpointError, match=r"holds 2 bytes, fewer than the 5 committed: the file was changed"
    ):
        await sink.recover(3, 5)
    for record in [None, -1, True, "2"]:
        with pytest.raises(ValueError, match=rf"the record of epoch 3 must be a file length, got {record!r}"):
            await sink.recover(3, record)
    await sink.close()
    assert path.read_text() == "1\n"


async def test_an_item_json_cannot_write_is_named_and_its_batch_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    await sink.recover(None, None)
    with pytest.raises(
        TypeError, match=r"cannot write item 1 of its batch, \{1, 2\}: Object of type set"
    ) as caught:
        await sink.write([1, {1, 2}, 3], 1)
    assert isinstance(caught.value.__cause__, TypeError)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(
        ValueError, match=r"cannot write item 0 of its batch, \[\[\[.*: Circular reference detected$"
    ):
        await sink.write([loop], 1)
    with pytest.raises(ValueError, match=r"cannot write item 0 of its batch, '\\ud800': 'utf-8' codec"):
        await sink.write(["\ud800"], 1)
    await sink.write([3], 1)
    assert await sink.pre_commit(1) == 2
    await sink.close()
    assert lines(path) == [3]


async def test_a_write_before_recover_or_after_close_is_refused(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "out.jsonl")
    with pytest.raises(StreamError, match=r"recover must be called before the first write"):
        await sink.write([1], 1)
    await sink.close()
    with pytest.raises(StreamError, match=r"^JsonLinesSink\('.*out.jsonl'\) is closed$"):
        await sink.write([1], 1)
    await sink.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
async def test_close_leaves_no_thread_and_no_open_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    await sink.recover(None, None)
    await sink.write([1], 1)
    assert len(sink_threads()) == 1
    assert open_files(path) == [str(path)]
    await sink.close()
    assert sink_threads() == []
    assert open_files(path) == []


async def test_a_run_that_crashed_after_a_pre_commit_the_store_lost_is_replayed_once(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    epochs = [[[1, 2], [3]], [[4]], [[5, 6]], [[7]]]
    starts = await run(lambda: JsonLinesSink(path), epochs, [Crash(2, False, 1), Crash(0, True, 1)])
    assert starts == [0, 1, 1]
    assert lines(path) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    epochs=epochs_of(st.integers() | st.text()),
    crashes=CRASHES,
)
def test_crashes_at_any_point_leave_each_epochs_lines_once(
    epochs: list[list[list[Any]]], crashes: list[Crash]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "out.jsonl")
        asyncio.run(run(lambda: JsonLinesSink(path), epochs, crashes))
        assert lines(path) == [item for epoch in epochs for batch in epoch for item in batch]
