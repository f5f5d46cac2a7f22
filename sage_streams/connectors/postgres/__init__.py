"""PostgreSQL (asyncpg, ``pip install 'sage-streams[postgres]'``): a sink that writes rows exactly
once, and a source that reads a table in the order of an increasing column.

**The sink.** :class:`PostgresSink` writes each item as a row of a table that has an ``_epoch
bigint`` column, which holds the row's epoch. An epoch's rows are held in memory until the
barrier; ``pre_commit(e)`` copies them (``COPY``, binary) in one transaction that also sets the
sink's *marker*, its row in a table ``sage_streams_epochs (sink, written, committed)``, to
``written = e``. The checkpoint store then commits epoch ``e`` with the record ``{"epoch": e}``,
and ``commit(e)`` sets ``committed = e``. A crash between the two leaves rows of an epoch the
checkpoint does not have; the restored run's ``recover(E, ...)`` deletes the rows with
``_epoch > E`` (the marker says whether there are any, so a restart with nothing to undo
touches no row) and sets the marker back to ``E``, in one transaction, and the replay writes
those epochs again: each row is in the table once. A run with no committed epoch (a new job, or
one whose checkpoints were reset) deletes every row that has an epoch; rows with a ``NULL``
epoch, which the sink never writes, are left alone.

*What readers see.* An epoch's rows become visible together, when ``pre_commit`` commits, about
a checkpoint interval after they were computed, and shortly before the checkpoint commits. If
the job crashes in between, the rows of that epoch are deleted at the restart and written again
(the same rows, for a job whose output depends only on its input). A reader that must never see
rows that may be taken back reads those whose epoch the checkpoint has committed::

    SELECT * FROM totals WHERE _epoch <= (SELECT committed FROM sage_streams_epochs WHERE sink = 'totals')

*Why an epoch column, not a two-phase commit.* ``PREPARE TRANSACTION`` at ``pre_commit`` and
``COMMIT PREPARED`` at ``commit`` would hide an epoch's rows from readers until the checkpoint
has committed, but it needs ``max_prepared_transactions > 0``, which is 0 by default and takes a
server restart to change (managed services make it a parameter group), and a prepared
transaction left behind by a job that is never restarted holds its locks and stops ``VACUUM``
until someone rolls it back by hand. The epoch column works on any PostgreSQL with ``INSERT``
and ``DELETE`` on the table, and leaves nothing open between two runs.

**The source.** :class:`PostgresSource` reads the rows of a table whose ``column`` only grows
(an identity column, a ``serial``, a sequence), ``WHERE column > $last ORDER BY column LIMIT
n``; the position is the last value read, so a restored run reads on after it: exactly once,
with a transactional sink. ``follow=True`` polls for new rows; ``notify="channel"`` also wakes
the poll when a writer runs ``NOTIFY channel`` (or ``pg_notify``), as an at-most-once wake-up:
the poll stays the truth, and a notification lost while the connection was down only delays.

*Rows committed late.* A sequence hands out its values when rows are inserted, not when their
transactions commit. If transaction A takes id 7 and B takes id 8, and B commits first, a poll
between the two commits reads 8 and moves past 7, which becomes visible only afterwards, behind
the position: that row is never read. This cannot happen with one writer, or with writers that
take a lock before taking their ids (``LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`` or
``pg_advisory_xact_lock``, so that ids are given in commit order). Otherwise read a view that
holds rows back for longer than a writing transaction lasts, such as ``CREATE VIEW settled AS
SELECT * FROM events WHERE created_at < now() - interval '10 seconds'`` (the source reads the
view, ordered by ``id``: a row enters the view in ``id`` order as long as ``created_at``, set by
``clock_timestamp()`` at insert, grows with ``id``).

**Faults.** A server that is down, restarting or drops the connection is retried with
:class:`~sage_streams.connectors.Backoff` on a new connection (5 tries over about 1.5 s by
default); after the last a :class:`~sage_streams.errors.ConnectorError` names the connector and
what it tried, and the run fails with a ``PipelineError``: the sink's table holds the epochs
that committed, nothing after them (an epoch whose transaction did not commit left no row). A
wrong URL or credentials, a missing database, table or column is a ``ConnectorError`` at the
start of the run, with the server's message. A value the table's column cannot take fails the
epoch with a :class:`TypeError` (or :class:`ValueError`, for a constraint) naming the row.

Example::

    from sage_streams.connectors.postgres import PostgresSink, PostgresSource

    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    orders = env.create_stream("orders", source=PostgresSource(url, "orders", "id", follow=True))
    totals.sink(PostgresSink(url, "totals"))  # CREATE TABLE totals (key text, total bigint, _epoch bigint)
"""

from sage_streams.connectors.postgres._sink import EPOCH_COLUMN, PostgresSink
from sage_streams.connectors.postgres._source import PostgresSource

__all__ = ["EPOCH_COLUMN", "PostgresSink", "PostgresSource"]
