"""Inputs -> one accumulator and tally: file by file, or in pieces on dask workers.

Serially each input is read and gridded whole (:func:`grid_file`). With ``--workers`` or
``--scheduler`` a large input is cut into pieces (:mod:`data_prep.pieces`) that the workers grid
on their own; the pieces of a file are joined into the file's result (:func:`finish_file`) as
if it had been read whole: the same maps bit for bit, the same accounting, the same coverage.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from data_prep.clock import StepClock
from data_prep.errors import UserError
from data_prep.feeds import file_day
from data_prep.grid import OBSERVE, Accumulator
from data_prep.pieces import Piece, plan_pieces, seeds
from data_prep.progress import bar
from data_prep.readers import SlowPath, get_reader
from data_prep.records import Cells, DedupState, ReadOptions, Records, Span, Tally, first_line
from data_prep.schema import Grid
from data_prep.spill import Spill

SCHEDULER_TIMEOUT = "10s"  # connecting to a --scheduler address
LOCAL_SCHEDULERS = ("threads", "sync", "synchronous", "processes")  # dask's, on this machine


@dataclass
class PieceResult:
    """A gridded piece: its counts and coverage, its tally, what it left its deduplicator
    (pieces only), and ``slow``: the fast CSV path met a value it cannot convert (nothing
    gridded; the file is read again as text)."""

    acc: Accumulator
    tally: Tally
    state: DedupState | None = None
    slow: bool = False


def grid_piece(
    piece: Piece, grid: Grid, clock: StepClock, opts: ReadOptions, scratch: str | None = None
) -> PieceResult:
    """Read and grid one piece of an input (or all of it); with a ``scratch`` folder, the rows
    of counts go there (:mod:`data_prep.spill`), not into memory."""
    path = piece.path
    _, reader = get_reader(piece.fmt, path)
    days = opts.file_days and reader.coverage == "span"  # the name says what it observes
    observe = reader.coverage if reader.coverage in OBSERVE and not days else ""
    spill = Spill(Path(scratch)) if scratch else None
    acc, tally, state = Accumulator(grid, clock, observe=observe, spill=spill), Tally(), None
    run_opts = dataclasses.replace(opts, robust=piece.robust, part=piece.part, seed=piece.seed)
    try:
        items = reader.read(path, run_opts, tally) if path.stat().st_size else ()
        for item in items:
            if isinstance(item, Records):
                acc.add(item, tally)
            elif isinstance(item, Span) and item.fov is not None:
                acc.fov_spans.setdefault(item.fov, []).append((item.t0, item.t1))
            elif isinstance(item, Span):
                acc.spans.append((item.t0, item.t1))
            elif isinstance(item, Cells):
                acc.cover_cells(item.time, item.lat, item.lon)
            elif isinstance(item, DedupState):
                state = item
    except SlowPath:
        return PieceResult(Accumulator(grid, clock), Tally(), slow=True)
    except (EOFError, OSError) as e:
        raise UserError(
            f"{path}: cannot read ({str(e).splitlines()[0]}); the file may be truncated"
        ) from None
    return PieceResult(acc.finish().flush(), tally, state)


def finish_file(
    path: Path, fmt: str, results: list[PieceResult], opts: ReadOptions
) -> tuple[Accumulator, Tally]:
    """Join the pieces of one input (in file order) into its accumulator and tally.

    A points file observes its first-to-last record span over all its pieces, or with
    ``opts.file_days`` the day its name gives (when it holds records, or always with
    ``opts.empty_file == "zero"``).
    """
    _, reader = get_reader(fmt, path)
    acc, tally = results[0].acc, Tally(files_read=1)
    tally.merge(results[0].tally)
    for r in results[1:]:
        acc.merge(r.acc)
        tally.merge(r.tally)
    if len(acc.feeds) > 1:  # one file, one span: from its first to its last record
        acc.feeds = [(min(a for a, _ in acc.feeds), max(b for _, b in acc.feeds))]
    tally.files_empty = int(not tally.read_records and reader.coverage in OBSERVE)
    if opts.file_days and reader.coverage == "span":
        day = file_day(path, opts.file_days, opts.timezone)
        if tally.read_records or opts.empty_file == "zero":
            acc.spans.append(day)
    # a point feed's records alone say what it observed; no record parsing: a wrong file
    if reader.coverage == "span" or tally.rejected_records["unparseable"] == tally.read_records:
        check_some_gridded(path, tally)
    return acc, tally


def grid_file(
    path: Path,
    fmt: str,
    grid: Grid,
    clock: StepClock,
    opts: ReadOptions,
    scratch: str | None = None,
) -> tuple[Accumulator, Tally]:
    """Read and grid one whole input; a CSV the fast path cannot convert is read again as text."""
    if opts.file_days:  # a name that gives no day is refused before reading
        _, reader = get_reader(fmt, path)
        if reader.coverage == "span":
            file_day(path, opts.file_days, opts.timezone)
    piece = Piece(Path(path), fmt)
    result = grid_piece(piece, grid, clock, opts, scratch)
    if result.slow:
        result = grid_piece(dataclasses.replace(piece, robust=True), grid, clock, opts, scratch)
    return finish_file(Path(path), fmt, [result], opts)


def check_some_gridded(path: Path, tally: Tally) -> None:
    """Refuse a point feed none of whose records was gridded: nothing shows that it observed
    the domain, so its span must not become observed zero-strike steps."""
    if not tally.read_records or tally.gridded_records:
        return
    why = ", ".join(
        f"{n:,} {reason.replace('_', ' ')}" for reason, n in tally.rejected_records.items() if n
    )
    fix = "check --grid, --start/--end and --columns"
    if tally.rejected_records["unparseable"] == tally.read_records:
        fix = "its times, coordinates or counts do not parse: check the file and --columns"
    raise UserError(
        f"{path}: none of its {tally.read_records:,} records can be gridded ({why}); nothing "
        f"written: {fix}, or leave the file out"
    )


def grid_all(
    plan, grid, clock, opts, *, workers: int = 1, scheduler: str | None = None, scratch=None
):
    """Grid every (path, format) of ``plan``; serially, or with dask when asked.

    ``scheduler``: None (a local dask cluster of ``workers`` processes when ``workers > 1``),
    ``"threads"`` or ``"sync"`` (dask's in-process schedulers), or a scheduler address.
    ``scratch``: a folder for the rows of counts (see :func:`grid_piece`); not used by the
    workers of a scheduler at an address, which may not share this machine's disk.
    Returns the merged accumulator and tally, and for each input the start times
    (datetime64[ns], sorted) of the steps where it gridded strikes.
    """
    if scheduler is None and workers <= 1:
        files = bar(plan, desc="prep: gridding", unit="file")
        results = (grid_file(p, f, grid, clock, opts, scratch) for p, f in files)
    else:
        local = scheduler is None or scheduler in LOCAL_SCHEDULERS
        with dask_runner(workers, scheduler) as run:
            results = _grid_pieces(plan, grid, clock, opts, run, local and scratch)
    acc, tally, steps = (
        Accumulator(grid, clock, spill=Spill(Path(scratch)) if scratch else None),
        Tally(),
        [],
    )
    for a, t in results:
        steps.append(clock.start(a.strike_steps()).astype("datetime64[ns]"))
        acc.merge(a)
        tally.merge(t)
    return acc, tally, steps


def _grid_pieces(plan, grid, clock, opts, run, scratch) -> list:
    """Every file's pieces gridded by ``run`` and joined per file: all pieces at once; then,
    as text, every piece of a file where the fast CSV path failed; then, with a seed, the
    pieces whose repeats differ from those of a whole read (:func:`data_prep.pieces.seeds`)."""
    pieces = plan_pieces(plan, run.workers, opts)
    args = (grid, clock, opts, scratch or None)
    keys = [(i, j) for i, ps in enumerate(pieces) for j in range(len(ps))]
    done = dict(zip(keys, run([pieces[i][j] for i, j in keys], args), strict=True))
    for i in sorted({i for (i, _), r in done.items() if r.slow}):
        pieces[i] = [dataclasses.replace(p, robust=True) for p in pieces[i]]
    _rerun([(i, j) for i, j in keys if pieces[i][j].robust], pieces, done, run, args)
    again = []
    for i, ps in enumerate(pieces):
        for j, seed in enumerate(seeds([done[i, j].state for j in range(len(ps))])):
            if seed is not None:
                ps[j] = dataclasses.replace(ps[j], seed=seed)
                again.append((i, j))
    _rerun(again, pieces, done, run, args)
    return [
        finish_file(ps[0].path, ps[0].fmt, [done[i, j] for j in range(len(ps))], opts)
        for i, ps in enumerate(pieces)
    ]


def _rerun(keys, pieces, done, run, args) -> None:
    """Grid the pieces ``keys`` ((file, piece) indices) again, replacing their results."""
    for k, r in zip(keys, run([pieces[i][j] for i, j in keys], args), strict=True):
        done[k] = r


@contextmanager
def dask_runner(workers: int, scheduler: str | None):
    """A function gridding a list of pieces on dask (``grid_piece(piece, *args)`` each), with
    the scheduler or local cluster open while the context lasts; its ``workers``: how many
    workers it has (a scheduler at an address: those it has now)."""
    import dask  # heavy: loaded only when prep --workers or --scheduler asks for it

    def runner(compute, n: int = workers):
        def run(pieces: list[Piece], args: tuple) -> list[PieceResult]:
            task = dask.delayed(grid_piece, pure=False)
            return list(compute([task(p, *args) for p in pieces])) if pieces else []

        run.workers = max(1, n)
        return run

    if scheduler in LOCAL_SCHEDULERS:
        yield runner(lambda tasks: dask.compute(*tasks, scheduler=scheduler))
        return
    from distributed import Client, LocalCluster  # heavy: only for a dask cluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, ValueError) as e:
            raise UserError(
                f"--scheduler {scheduler}: cannot reach the dask scheduler ({first_line(e)}); "
                "check the address (tcp://host:8786) and that it runs, or use --workers N"
            ) from None
        with client:
            n = len(client.scheduler_info().get("workers", {}))
            yield runner(lambda tasks: client.gather(client.compute(tasks)), n or workers)
        return
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as lc:
        with Client(lc) as client:
            yield runner(lambda tasks: client.gather(client.compute(tasks)))
