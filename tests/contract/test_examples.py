"""Every script in examples/ runs and prints exactly what it is documented to print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "custom_connector.py": """\
first run: a crash, on purpose
second run: restored a checkpoint: True; 600 lines out of 600, once each: True
""",
    "recovery.py": "50 totals, 4,900,000 in all; the job's guarantee: exactly_once\n",
    "async_enrichment.py": """\
  1 ana   Lisbon  free
  2 bo    Oslo    gold
  3 chen  Rome    free
 11 ana   Lisbon  gold
 12 bo    Oslo    gold
 13 chen  Rome    free
 14 dee   Lisbon  no profile
 21 ana   Lisbon  gold
 22 bo    Oslo    no profile
 23 chen  Rome    free
 24 dee   Lisbon  free
dead letter: ana 10.0.0.9 (TimeoutError)
geo calls: 12 completed, 1 timed out
""",
    "postgres_sink.py": """\
the job's guarantee: exactly_once
minute 0  shop-0   334 orders   1003
minute 0  shop-1   333 orders    995
minute 0  shop-2   333 orders    999
minute 1  shop-0   333 orders    995
minute 1  shop-1   334 orders   1005
minute 1  shop-2   333 orders    998
minute 2  shop-0   333 orders   1001
minute 2  shop-1   333 orders    998
minute 2  shop-2   334 orders   1000
epochs written: 1, committed by the checkpoint: 1
""",
    "threaded_producer.py": "fahrenheit: [70.7, 71.6, 67.6, 73.6]\n",
    "time_window_aggregation.py": """\
[    0,    60) count=3 total=65.00 average=21.67
[   60,   120) count=3 total=61.00 average=20.33
[  120,   180) count=1 total=80.00 average=80.00
[    0,    60) folded: web 2 (55.50) + app 1 (9.50)
[   60,   120) folded: web 1 (12.00) + app 2 (49.00)
[  120,   180) folded: web 1 (80.00) + app 0 (0.00)
""",
    "simple_merge.py": """\
   0s data1: t1 21.5 C
   0s data2: t7 9.0 C
  60s data1: t1 21.9 C
  60s data2: t7 8.4 C
 120s data2: t7 8.1 C
merged 5 readings from 2 + 3
""",
    "stream_join.py": """\
Ana (gold, Lisbon) view /shoes
Ana (gold, Lisbon) buy /shoes/42
Bo (free, Oslo) view /hats
outer: (None, 'y')
outer: ('a', None)
outer: ('b', 'x')
""",
    "stream_state.py": """\
counter = 3, statistics.count = 3
order 1 via web: 30.00
order 2 via web: 12.50
order 3 via app: 99.00
keys: counter, events, last_timestamp, statistics
""",
    "complex_event_processing.py": """\
ana: login at 100, purchase 59.90 at 103
chen: login at 105, purchase 12.00 at 110
bo: login at 140, purchase 230.00 at 150
""",
    "functions_integration.py": """\
stream1:temperature=21
stream1:temperature=22
stream2:humidity=40
ran in environment 'default'
""",
    "quickstart.py": """\
review order 102: 110.40 EUR from bo
review order 104: 260.00 EUR from chen
revenue: ana=60.13, bo=117.76, chen=260.00
to_eur saw 5 orders; review passed 2
the run has finished
history: 70 of 1000 orders were 90 EUR or more
""",
    "error_handling.py": """\
Error in stream parse: could not convert string to float: 'n/a'
Error in stream parse: 'amount'
paid: c1=1990, c3=500, w1=725, w3=10000
dead letter from parse: c2 (cards)
dead letter from parse: w2 (wallet)
robust_processor emitted 0; errors kept in state:
  could not convert string to float: 'n/a'
  'amount'
stopped: 11 errors within 60 s in 'parse'
skipped before the stop: 10
""",
    "redis_pipeline.py": """\
the job's guarantee: exactly_once
dead letter from parse: {'user': 'bo', 'timestamp': 'soon', 'cents': '999'} (ValueError)
total: user=ana, minute=0, cents=200
total: user=bo, minute=0, cents=300
total: user=chen, minute=1, cents=450
total: user=ana, minute=1, cents=200
total: user=bo, minute=1, cents=50
total: user=ana, minute=2, cents=10
latest: ana=10, bo=50, chen=450
pending in the group: 0
""",
    "backpressure_management.py": """\
 block: delivered + dropped = 20000: True, dropped any: False, peak <= 1000: True, spilled: False
  drop: delivered + dropped = 20000: True, dropped any: True, peak <= 1000: True, spilled: False
buffer: delivered + dropped = 20000: True, dropped any: False, peak <= 1000: True, spilled: True
""",
}


def test_every_example_has_an_expected_output() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_prints_what_it_should(script: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # The recovery example keeps its checkpoints in a folder of its own for this run only:
    # one a run of another version left would be restored. The Redis and PostgreSQL examples
    # talk to the session's servers.
    servers = {
        "postgres_sink.py": ("DATABASE_URL", "postgres_server"),
        "redis_pipeline.py": ("REDIS_URL", "redis_server"),
    }
    extra = {}
    if script in servers:
        variable, fixture = servers[script]
        extra[variable] = request.getfixturevalue(fixture).url
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SAGE_STREAMS_RECOVERY": str(tmp_path / "recovery"), **extra},
    )
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout == EXPECTED[script]
