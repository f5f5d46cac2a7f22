"""The file sources: exactly the file's records, batches with the position after each, a resume
from any of them giving exactly the rest, and bad records named by file and line."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.connectors import CsvSource, JsonLinesSource, ReplayableSource


async def read(source: ReplayableSource, position: Any = None, size: int = 2) -> list[tuple[list[Any], Any]]:
    """Every batch from ``position`` on, with its position."""
    return [batch async for batch in source.batches(position, size)]


async def items(source: ReplayableSource, position: Any = None, size: int = 2) -> list[Any]:
    return [item for batch, _ in await read(source, position, size) for item in batch]


async def test_json_lines_are_read_in_batches_with_the_byte_offset_after_each(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n[2, "é"]\n\n  \n3\n"last, no newline"', encoding="utf-8")
    source = JsonLinesSource(path)
    assert source.guarantee == "exactly_once"
    assert isinstance(source, ReplayableSource)
    first = len('{"a": 1}\n[2, "é"]\n'.encode())
    assert await read(source) == [
        ([{"a": 1}, [2, "é"]], [0, first]),
        ([3, "last, no newline"], [0, path.stat().st_size]),
    ]
    assert await read(source, [0, first], size=10) == [([3, "last, no newline"], [0, path.stat().st_size])]
    assert await read(source, [0, path.stat().st_size]) == []


async def test_a_glob_is_read_in_sorted_order_and_a_position_names_the_file(tmp_path: Path) -> None:
    for name, text in [("2.jsonl", "3\n4\n"), ("1.jsonl", "1\n2\n"), ("3.jsonl", ""), ("4.jsonl", "5\n")]:
        (tmp_path / name).write_text(text)
    source = JsonLinesSource(str(tmp_path / "*.jsonl"))
    assert await read(source, size=3) == [([1, 2, 3], [1, 2]), ([4, 5], [3, 2])]
    assert await read(source, [1, 2], size=3) == [([4, 5], [3, 2])]
    assert await items(JsonLinesSource(str(tmp_path / "*.none"))) == []


async def test_a_line_that_is_not_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('1\n\n2\n{"a": \n4\n')
    with pytest.raises(ValueError, match=rf"^'{path}', line 4: not a JSON value: Expecting value") as caught:
        await items(JsonLinesSource(path), [0, 2])  # resumed: the line is counted from the start
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)
    path.write_bytes(b"1\n\xff\n")
    with pytest.raises(ValueError, match=r"line 2: not a JSON value: 'utf-8' codec can't decode"):
        await items(JsonLinesSource(path))


async def test_a_position_that_the_source_did_not_give_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("1\n")
    source = JsonLinesSource(path)
    for position in [[1, 1], [0, -1], (0,), "0", [0, 1.5]]:
        with pytest.raises(
            ValueError, match=r"is not a position it gave, \[file_index, byte_offset\] in 1 files"
        ):
            await items(source, position)
    with pytest.raises(
        ValueError, match=r"position \[0, 3\] is beyond the end of .*a.jsonl'; has it changed\?"
    ):
        await items(source, [0, 3])
    with pytest.raises(FileNotFoundError, match="no file"):
        await items(JsonLinesSource(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        await items(source, size=0)


async def test_csv_rows_are_dicts_of_the_header_and_a_resume_keeps_its_names(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('name,note\r\nann,"two\nlines"\r\n\r\nbob,"a ""quote"", é"\r\ncy,\r\n', encoding="utf-8")
    source = CsvSource(path)
    batches = await read(source)
    assert batches == [
        ([{"name": "ann", "note": "two\nlines"}, {"name": "bob", "note": 'a "quote", é'}], [0, 53]),
        ([{"name": "cy", "note": ""}], [0, 58]),
    ]
    assert path.read_bytes()[53:] == b"cy,\r\n"
    assert await read(source, [0, 53]) == batches[1:]


async def test_csv_rows_without_a_header_are_lists(tmp_path: Path) -> None:
    (tmp_path / "1.tsv").write_text("a\tb\n")
    (tmp_path / "2.tsv").write_text('c\t"d\te"\n')
    source = CsvSource(str(tmp_path / "*.tsv"), header=False, delimiter="\t")
    assert await read(source, size=5) == [([["a", "b"], ["c", "d\te"]], [1, 8])]


async def test_a_csv_row_that_does_not_fit_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('a,b\n1,"x\ny"\n1,2,3\n')
    with pytest.raises(
        ValueError,
        match=rf"^'{path}', line 4: a row that does not fit the header: 3 fields, the header has 2$",
    ):
        await items(CsvSource(path))
    path.write_text("a,a\n")
    with pytest.raises(ValueError, match=r"line 1: a header that names a field twice: \['a', 'a'\]"):
        await items(CsvSource(path))
    path.write_text('a\n"x"y\n')
    with pytest.raises(ValueError, match=r"line 2: not a CSV row: ',' expected after '\"'$"):
        await items(CsvSource(path, header=False), [0, 2])
    path.write_text('a\n"x\n\n')  # a quote never closed: a file cut short, not a last field
    with pytest.raises(ValueError, match=r"line 2: not a CSV row: unexpected end of data$"):
        await items(CsvSource(path))
    with pytest.raises(ValueError, match="delimiter must be one character, got ';;'"):
        CsvSource(path, delimiter=";;")


def json_lines(values: list[Any], blank: bool, newline_at_end: bool) -> str:
    lines = [json.dumps(value, ensure_ascii=False) for value in values]
    text = ("\n\n" if blank else "\n").join(lines)
    return text + "\n" if newline_at_end and lines else text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)


def check_every_resume(source: ReplayableSource, expected: list[Any], size: int, resize: int) -> None:
    """A full read gives ``expected``; a read from each position it gave gives the rest."""

    async def main() -> None:
        batches = await read(source, size=size)
        assert [item for batch, _ in batches for item in batch] == expected
        assert all(1 <= len(batch) <= size for batch, _ in batches)
        done = 0
        for batch, position in batches:
            done += len(batch)
            assert await items(source, position, resize) == expected[done:]

    asyncio.run(main())


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    files=st.lists(
        st.tuples(st.lists(JSON, max_size=6), st.booleans(), st.booleans()), min_size=1, max_size=4
    ),
    size=st.integers(1, 5),
    resize=st.integers(1, 5),
)
def test_json_lines_resume_from_every_position_to_exactly_the_rest(
    files: list[tuple[list[Any], bool, bool]], size: int, resize: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for index, (values, blank, newline_at_end) in enumerate(files):
            Path(directory, f"{index:02}.jsonl").write_text(
                json_lines(values, blank, newline_at_end), encoding="utf-8"
            )
        expected = [value for values, _, _ in files for value in values]
        check_every_resume(JsonLinesSource(f"{directory}/*.jsonl"), expected, size, resize)


FIELD = st.text(st.characters(blacklist_categories=["Cs"]), max_size=4)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 3),
    data=st.data(),
    header=st.booleans(),
    terminator=st.sampled_from(["\n", "\r\n"]),
    size=st.integers(1, 5),
    resize=st.integers(1, 5),
)
def test_csv_resumes_from_every_position_to_exactly_the_rest(
    width: int, data: st.DataObject, header: bool, terminator: str, size: int, resize: int
) -> None:
    row = st.lists(FIELD, min_size=width, max_size=width)
    files = data.draw(st.lists(st.lists(row, max_size=5), min_size=1, max_size=3))
    names = data.draw(st.lists(FIELD, min_size=width, max_size=width, unique=True))
    expected: list[Any] = []
    with tempfile.TemporaryDirectory() as directory:
        for index, rows in enumerate(files):
            text = io.StringIO()
            # With "\n" ending rows, the writer would leave a "\r" in a field unquoted.
            quoting = csv.QUOTE_MINIMAL if terminator == "\r\n" else csv.QUOTE_ALL
            writer = csv.writer(text, lineterminator=terminator, quoting=quoting)
            writer.writerows([names, *rows] if header else rows)
            Path(directory, f"{index:02}.csv").write_text(text.getvalue(), encoding="utf-8", newline="")
            expected += [dict(zip(names, fields, strict=True)) for fields in rows] if header else rows
        check_every_resume(CsvSource(f"{directory}/*.csv", header=header), expected, size, resize)
